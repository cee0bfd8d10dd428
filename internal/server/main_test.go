package server_test

import (
	"os"
	"testing"

	"github.com/parleyhq/parley/internal/leaktest"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) {
	teardown := redistest.Setup()
	code := pgtest.Run(m)
	teardown()
	os.Exit(leaktest.Check(code))
}

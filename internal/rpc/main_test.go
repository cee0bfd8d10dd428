package rpc_test

import (
	"github.com/parleyhq/parley/internal/leaktest"
	"os"
	"testing"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) {
	teardown := redistest.Setup()
	code := pgtest.Run(m)
	teardown()
	os.Exit(leaktest.Check(code))
}

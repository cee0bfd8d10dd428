package store_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) { pgtest.MainWith(m, redistest.Setup) }

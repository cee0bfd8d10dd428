package telemetry_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

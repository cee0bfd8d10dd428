//go:build bench

package bench

import (
	"os"
	"testing"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/redistest"
)

// TestMain gives the run its own PostgreSQL and Redis, removed afterwards.
func TestMain(m *testing.M) {
	teardown := redistest.Setup()
	code := pgtest.Run(m)
	teardown()
	os.Exit(code)
}

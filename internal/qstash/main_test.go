package qstash_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/pgtest"
)

// TestMain gives the package's tests a database (the deliveries to a
// running service) and fails them if they leave goroutines running.
func TestMain(m *testing.M) { pgtest.Main(m) }

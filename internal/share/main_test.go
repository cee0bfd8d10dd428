package share_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/leaktest"
)

// TestMain fails the package's tests if they leave goroutines running.
func TestMain(m *testing.M) { leaktest.Main(m) }

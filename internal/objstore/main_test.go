package objstore_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/leaktest"
)

// TestMain fails the package's tests if they leave goroutines running
// (its behaviour is tested through internal/rpc, against a real server).
func TestMain(m *testing.M) { leaktest.Main(m) }

// Package leaktest fails a test binary whose tests leave goroutines
// running, with go.uber.org/goleak. pgtest.Main, redistest.Main and the
// packages' own TestMain call it after their tests, so every package's
// tests are checked.
package leaktest

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// ignored are goroutines that outlive a test by design, not by a bug:
// idle keep-alive connections of shared HTTP clients (closed below where
// reachable), and the runtime's and libraries' process-wide workers.
var ignored = []goleak.Option{
	// Anywhere in the stack: an idle connection waits in a read.
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	// localproc keeps one OS thread for starting child servers (Pdeathsig).
	goleak.IgnoreTopFunction("github.com/parleyhq/parley/internal/localproc.Start.func1.1"),
}

// Check returns code, or 1 when code is 0 and goroutines leaked, which it
// prints.
func Check(code int) int {
	http.DefaultClient.CloseIdleConnections()
	if code != 0 {
		return code
	}
	if err := goleak.Find(ignored...); err != nil {
		fmt.Fprintf(os.Stderr, "leaktest: goroutines left running after the tests:\n%v\n", err)
		return 1
	}
	return 0
}

// Main is TestMain for a package with no servers to set up: it runs the
// tests and fails the binary if they leaked goroutines.
func Main(m *testing.M) { os.Exit(Check(m.Run())) }

package localproc_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/parleyhq/parley/internal/localproc"
)

// TestFreePort binds the port FreePort returns, as a server would. Other
// processes on the machine may take a port between the two, which is why
// every caller retries; the test retries the same bounded number of times.
func TestFreePort(t *testing.T) {
	t.Parallel()
	const attempts = 5
	var errs []error
	for range attempts {
		port, err := localproc.FreePort()
		if err != nil {
			t.Fatalf("FreePort: %v", err)
		}
		if port <= 0 || port > 65535 {
			t.Fatalf("FreePort returned %d, not a TCP port", port)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return
		}
		errs = append(errs, err)
	}
	t.Errorf("none of %d ports from FreePort could be bound on 127.0.0.1: %v", attempts, errs)
}

// Package stripetest gives tests a Stripe API to talk to: stripe-mock,
// Stripe's own server that answers every endpoint of the API from its
// OpenAPI specification, built from the version pinned in go.mod (a tool
// directive) and started on a loopback port. Tests thereby send real
// requests through the real stripe-go client and get answers in the real
// wire format, without a network or an account.
//
// stripe-mock keeps no state: a created object is not there to fetch, and
// every answer is the specification's fixture with the request's fields
// reflected where the API would. Tests check what Parley sends and what it
// does with such answers, never stored state on the Stripe side.
package stripetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v84"

	"github.com/parleyhq/parley/internal/localproc"
)

const (
	// module is stripe-mock's module path; its version is the one go.mod
	// pins with `tool github.com/stripe/stripe-mock`.
	module = "github.com/stripe/stripe-mock"
	// readyTimeout bounds how long stripe-mock may take to answer; it
	// loads its specification in about a second.
	readyTimeout = 30 * time.Second
	// startAttempts bounds retries when another process took the port
	// between choosing it and stripe-mock binding it.
	startAttempts = 5
	// Key is an API key stripe-mock accepts (it checks only the prefix).
	Key = "sk_test_parley"
)

var (
	build struct {
		sync.Mutex
		path string
		err  error
	}
)

// Server is a stripe-mock owned by one test and stopped when it ends.
type Server struct {
	// URL is the base URL of the API, such as http://127.0.0.1:12111.
	URL    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
}

// Start builds stripe-mock (once per test process, into Go's build cache
// directory, so later runs reuse it) and starts one for tb on 127.0.0.1.
// It fails tb, never skips it, when it cannot.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := binary()
	if err != nil {
		tb.Fatal(err)
	}
	var s *Server
	for attempt := 1; ; attempt++ {
		s, err = start(bin)
		if err == nil || attempt == startAttempts {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.stop)
	return s
}

// Backends are stripe-go's backends pointed at the server, without
// retries (stripe-mock answers at once or not at all) and without logs.
func (s *Server) Backends() *stripe.Backends {
	return Backends(s.URL)
}

// Backends are stripe-go's backends pointed at url, as the service builds
// them from STRIPE_API_BASE.
func Backends(url string) *stripe.Backends {
	return stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(url),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
}

// Client is a stripe-go client for the server.
func (s *Server) Client() *stripe.Client {
	return stripe.NewClient(Key, stripe.WithBackends(s.Backends()))
}

// binary builds stripe-mock once per process. The binary goes under the
// user's cache directory, named by the pinned version, so the build (a
// few seconds) happens once per machine and version.
func binary() (string, error) {
	build.Lock()
	defer build.Unlock()
	if build.path != "" || build.err != nil {
		return build.path, build.err
	}
	build.path, build.err = buildBinary()
	return build.path, build.err
}

func buildBinary() (string, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("stripetest: "+format+"; stripe-mock is built with the Go toolchain from the version go.mod pins "+
			"(tool "+module+"): check that `go` is on PATH and that `go build "+module+"` works (the module proxy or GOFLAGS=-mod=mod may be needed once)", args...)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
	if err != nil {
		return "", fail("go list -m %s: %v", module, err)
	}
	version := strings.TrimSpace(string(out))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "parley", "stripe-mock-"+version)
	bin := filepath.Join(dir, "stripe-mock")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fail("%v", err)
	}
	// Build to a temporary name and rename, so a build interrupted or run
	// by two test processes at once never leaves half a binary in place.
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, module)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fail("go build %s: %v\n%s", module, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fail("%v", err)
	}
	return bin, nil
}

// errPortInUse lets Start tell a lost race for a port from other failures.
var errPortInUse = errors.New("port in use")

func start(bin string) (*Server, error) {
	port, err := localproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("stripetest: %w", err)
	}
	tlsPort, err := localproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("stripetest: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// stripe-mock also serves HTTPS, on every interface at 12112 unless
	// told otherwise: keep that on loopback too, on a port of its own, so
	// servers of parallel tests do not collide.
	cmd := exec.Command(bin, "-http-addr", addr, "-https-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stripetest: %w", err)
	}
	cmd.Stdout = io.Discard
	if err := localproc.Start(cmd, os.Kill); err != nil {
		return nil, fmt.Errorf("stripetest: start %s: %w", bin, err)
	}
	// stripe-mock logs to stderr; keep the tail for the error message and
	// drain the rest so it never blocks on a full pipe.
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines[max(0, len(lines)-19):], sc.Text())
			mu.Unlock()
		}
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s := &Server{URL: "http://" + addr, cmd: cmd, exited: exited}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		if ready(ctx, s.URL) {
			return s, nil
		}
		select {
		case <-exited:
			mu.Lock()
			log := strings.Join(lines, "\n")
			mu.Unlock()
			if strings.Contains(log, "address already in use") {
				return nil, errPortInUse
			}
			return nil, fmt.Errorf("stripetest: stripe-mock exited before answering:\n%s", log)
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("stripetest: stripe-mock did not answer on %s within %s", addr, readyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ready reports whether stripe-mock answers an API call.
func ready(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/customers", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+Key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

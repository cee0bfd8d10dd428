package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/localproc"
)

const (
	// readyTimeout bounds how long a starting redis-server may take to
	// answer PING; it normally takes a few milliseconds.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds each wait for an exit: first after SIGTERM, then
	// after SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts bounds retries when the port was taken by someone else
	// between choosing it and redis-server binding it.
	startAttempts = 5
)

// errMissing tells a developer what to install; tests fail with it instead
// of skipping, so a machine without Redis cannot pass by testing less.
var errMissing = errors.New("redistest: redis-server is not on PATH; install it " +
	"(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), " +
	"or set REDIS_URL to a Redis the tests may use (tests that call Start still need redis-server)")

// errPortInUse lets start tell a lost race for a port from other failures.
var errPortInUse = errors.New("port in use")

// Server is a redis-server owned by one test, for tests that take Redis away
// and bring it back. It listens on 127.0.0.1, keeps nothing on disk and
// serves an empty dataset after every Restart, as a crashed Redis without
// persistence would.
type Server struct {
	// URL is the redis:// URL of the server. It stays the same across
	// Restart, so clients built from it reconnect by themselves.
	URL string

	tb   testing.TB // nil for the shared server, whose errors go to URL's callers
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
}

// Start starts a redis-server that belongs to tb and is stopped when tb
// ends. Unlike URL it ignores REDIS_URL, since stopping a Redis that other
// tests share would break them. Call its methods from the test's goroutine.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, dir: tb.TempDir()}
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// Stop stops the server; clients see connection errors until Restart.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	if err := s.stop(); err != nil {
		s.tb.Fatal(err)
	}
}

// Restart stops the server if it runs and starts it again, empty, on the
// same port.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.stop(); err != nil {
		s.tb.Fatal(err)
	}
	if err := s.start(); err != nil {
		s.tb.Fatal(err)
	}
}

// start launches redis-server and waits until it answers PING. The first
// start picks a free port; later ones must keep it, so they wait for a
// taken port to come free instead of moving.
func (s *Server) start() error {
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		return errMissing
	}
	keepPort := s.port != 0
	for attempt := range startAttempts {
		if !keepPort {
			// Another process may take the port before redis-server
			// binds it; the loop retries then.
			if s.port, err = localproc.FreePort(); err != nil {
				return fmt.Errorf("redistest: find a free port: %w", err)
			}
			s.URL = "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0"
		} else if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		err = s.launch(binary)
		if !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return fmt.Errorf("redistest: port %d stayed in use after %d attempts", s.port, startAttempts)
}

func (s *Server) launch(binary string) error {
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	cmd := exec.Command(binary,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The kernel kills the server when the test process dies, even without
	// running Main or cleanups (a test timeout panics and exits at once);
	// SIGKILL, as the server keeps nothing worth a clean shutdown.
	err = localproc.Start(cmd, os.Kill)
	// The child holds its own descriptor for the log.
	_ = logFile.Close()
	if err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	if err := waitReady(s.port, exited); err != nil {
		_ = s.stop()
		log, _ := os.ReadFile(logPath)
		if strings.Contains(string(log), "Address already in use") {
			return errPortInUse
		}
		return fmt.Errorf("redistest: redis-server on 127.0.0.1:%d did not start: %v\nits log:\n%s", s.port, err, log)
	}
	return nil
}

// waitReady polls with PING rather than sleeping a fixed time: redis-server
// usually answers within milliseconds but may be slow on a loaded machine.
func waitReady(port int, exited <-chan struct{}) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			return errors.New("it exited")
		default:
		}
		err := pingRaw(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within %v: %w", readyTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pingRaw speaks just enough RESP to see "+PONG", so readiness does not
// depend on a client library's retries and pools.
func pingRaw(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func (s *Server) stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	// SIGTERM first so redis-server closes its clients' connections the
	// way a stopped Redis would; nothing is saved since persistence is off.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("redistest: redis-server (pid %d) did not exit", cmd.Process.Pid)
	}
}

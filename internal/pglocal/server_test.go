package pglocal

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tempDir returns a new directory, removed when the test ends, that the
// server can enter even when it runs as the postgres user (tests as root).
func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			tb.Error(err)
		}
	})
	if err := os.Chmod(dir, 0o711); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// mustStart starts a server and stops it when the test ends (before
// tempDir's removal, as clean-ups run last-registered first).
func mustStart(tb testing.TB, opts Options) *Server {
	tb.Helper()
	begin := time.Now()
	s, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Logf("started in %v on port %d", time.Since(begin).Round(time.Millisecond), s.port)
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("Stop: %v", err)
		}
	})
	return s
}

// connect opens a connection closed when the test ends.
func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(tempDir(t), "data")
	ctx := t.Context()

	s := mustStart(t, Options{DataDir: dataDir})
	conn := connect(t, s.URL("postgres"))
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('survives restarts')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if !Running(dataDir) {
		t.Error("Running = false while the server runs")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("postmaster.pid after Stop: %v", err)
	}
	if Running(dataDir) {
		t.Error("Running = true after Stop")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dataDir), "postgres.log")); err != nil {
		t.Errorf("default log: %v", err)
	}

	s = mustStart(t, Options{DataDir: dataDir})
	var note string
	if err := connect(t, s.URL("postgres")).QueryRow(ctx, "SELECT note FROM kept").Scan(&note); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if note != "survives restarts" {
		t.Errorf("note = %q", note)
	}
}

func TestStartAfterCrash(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(tempDir(t), "data")
	ctx := t.Context()

	s, err := Start(ctx, Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, s.URL("postgres"))
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		s.Stop()
		t.Fatal(err)
	}
	// A crash leaves postmaster.pid behind.
	if err := killGroup(s.cmd.Process); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop after a crash: %v; want the crash reported", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err != nil {
		t.Fatalf("postmaster.pid after kill: %v", err)
	}

	s = mustStart(t, Options{DataDir: dataDir})
	var n int
	if err := connect(t, s.URL("postgres")).QueryRow(ctx, "SELECT n FROM kept").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after crash recovery: n = %d, %v", n, err)
	}
}

func TestStartStaleLockWithReusedPID(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(tempDir(t), "data")

	s := mustStart(t, Options{DataDir: dataDir, Ephemeral: true})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// After a reboot the PID in a stale lock file often belongs to an
	// unrelated live process; this test's own process plays that part.
	lock := strconv.Itoa(os.Getpid()) + "\n" + dataDir + "\n1700000000\n5499\n\n127.0.0.1\n  1234  5678\nready   \n"
	if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), []byte(lock), 0o600); err != nil {
		t.Fatal(err)
	}
	mustStart(t, Options{DataDir: dataDir, Ephemeral: true})
}

func TestStartAlreadyRunning(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(tempDir(t), "data")
	mustStart(t, Options{DataDir: dataDir, Ephemeral: true})

	s, err := Start(t.Context(), Options{DataDir: dataDir, Ephemeral: true})
	if !errors.Is(err, ErrAlreadyRunning) {
		if s != nil {
			s.Stop()
		}
		t.Fatalf("second Start on the same directory: %v, want ErrAlreadyRunning", err)
	}
}

func TestStartPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	s, err := Start(t.Context(), Options{DataDir: filepath.Join(tempDir(t), "data"), Port: port, Ephemeral: true})
	if err == nil {
		s.Stop()
		t.Fatal("Start on a taken port succeeded")
	}
	if !errors.Is(err, errPortInUse) || !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("Start on a taken port: %v", err)
	}
}

func TestStartRefusesForeignDirectory(t *testing.T) {
	t.Parallel()
	dataDir := tempDir(t)
	if err := os.WriteFile(filepath.Join(dataDir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Start(t.Context(), Options{DataDir: dataDir})
	if err == nil {
		s.Stop()
		t.Fatal("Start in a non-empty directory succeeded")
	}
	if !strings.Contains(err.Error(), "not empty") {
		t.Errorf("error = %v", err)
	}
}

func TestCreateDatabase(t *testing.T) {
	t.Parallel()
	s := mustStart(t, Options{DataDir: filepath.Join(tempDir(t), "data"), Ephemeral: true})
	ctx := t.Context()

	t.Run("OK", func(t *testing.T) {
		url, err := s.CreateDatabase(ctx, "parley_dev")
		if err != nil {
			t.Fatal(err)
		}
		if want := s.URL("parley_dev"); url != want {
			t.Errorf("URL = %q, want %q", url, want)
		}
		var name string
		if err := connect(t, url).QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil || name != "parley_dev" {
			t.Errorf("current_database() = %q, %v", name, err)
		}
	})
	t.Run("Exists", func(t *testing.T) {
		if _, err := s.CreateDatabase(ctx, "parley_dev"); err != nil {
			t.Errorf("second CreateDatabase: %v", err)
		}
	})
	t.Run("ErrNameTooLong", func(t *testing.T) {
		if _, err := s.CreateDatabase(ctx, strings.Repeat("x", 64)); err == nil {
			t.Error("CreateDatabase accepted a 64-byte name")
		}
	})
}

func TestURL(t *testing.T) {
	s := &Server{port: 5499}
	want := "postgres://postgres@127.0.0.1:5499/parley?sslmode=disable"
	if got := s.URL("parley"); got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

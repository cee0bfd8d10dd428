// Package pglocal runs a private PostgreSQL server from the binaries
// installed on the machine, for `parley dev` (a persistent data directory,
// so data survives restarts) and for tests (a throwaway one).
//
// The server listens on 127.0.0.1 only, with no Unix socket, and trusts
// every connection as the superuser "postgres": it is for development data,
// never for production. When Parley runs as root the server runs as the
// postgres system user, because PostgreSQL refuses to run as root.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleyhq/parley/internal/localproc"
)

const (
	// readyTimeout bounds the wait for a started server to accept
	// connections; crash recovery after an unclean stop can take a while.
	readyTimeout = time.Minute
	// stopTimeout bounds a fast shutdown before the server is killed.
	stopTimeout = 30 * time.Second
	// portAttempts bounds retries when a free port is taken between
	// choosing it and postgres binding it (parallel test packages).
	portAttempts = 5
	// tailSize is how much server output an error quotes.
	tailSize = 4 << 10
)

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("port already in use")

// Options configures Start.
type Options struct {
	// DataDir holds the cluster. It is created and initialised when missing
	// or empty, and reused when it already holds a cluster (its major
	// version must match the binaries). Required.
	DataDir string
	// Log receives the server's output, from a goroutine. Nil appends it to
	// postgres.log beside DataDir (./.parley/postgres.log for `parley dev`),
	// so a developer can read why the server misbehaved after the fact.
	Log io.Writer
	// Port is the TCP port on 127.0.0.1; 0 picks a free one on every start.
	Port int
	// Ephemeral trades durability for speed, for throwaway test servers:
	// initdb skips fsync, and the server runs with fsync, synchronous_commit
	// and full_page_writes off. A crash may corrupt such a cluster.
	Ephemeral bool
	// BinDir holds initdb and postgres; empty means FindBinaries.
	BinDir string
}

// Server is a running PostgreSQL server started by Start. Its methods are
// safe for concurrent use.
type Server struct {
	dataDir  string
	port     int
	cmd      *exec.Cmd
	tail     *logTail
	closeLog func() error

	exited  chan struct{} // closed when the postmaster has exited
	waitErr error         // cmd.Wait's result, set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start initialises opts.DataDir if it holds no cluster, starts postgres on
// 127.0.0.1 and returns once the server accepts connections. ctx bounds the
// start only; the server runs until Stop. A postmaster.pid left by a crashed
// server is removed; a live server on the same directory is reported with
// ErrAlreadyRunning. Missing binaries are reported with ErrNoBinaries.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pglocal: Options.DataDir is required")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = FindBinaries(); err != nil {
			return nil, fmt.Errorf("pglocal: %w", err)
		}
	}
	existing, err := prepareDataDir(dataDir, acct)
	if err != nil {
		return nil, err
	}
	log, closeLog, err := openLog(opts.Log, dataDir)
	if err != nil {
		return nil, err
	}
	s, err := start(ctx, opts, binDir, dataDir, acct, existing, log)
	if err != nil {
		return nil, errors.Join(err, closeLog())
	}
	s.closeLog = closeLog
	return s, nil
}

// start does Start's work once the data directory and log are in place.
func start(ctx context.Context, opts Options, binDir, dataDir string, acct *account, existing bool, log io.Writer) (*Server, error) {
	if existing {
		if err := checkVersion(ctx, binDir, dataDir); err != nil {
			return nil, err
		}
	} else if err := initdb(ctx, binDir, dataDir, acct, opts.Ephemeral, log); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if err := clearStaleLock(dataDir); err != nil {
			return nil, err
		}
		port := opts.Port
		if port == 0 {
			var err error
			// Another process may take the port before postgres binds
			// it; the loop retries then.
			if port, err = localproc.FreePort(); err != nil {
				return nil, fmt.Errorf("pglocal: find a free port: %w", err)
			}
		}
		s, err := launch(ctx, binDir, dataDir, port, acct, opts.Ephemeral, log)
		if err == nil {
			return s, nil
		}
		if opts.Port != 0 || !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return nil, err
		}
	}
}

// openLog returns where server output goes, and how to close it.
func openLog(w io.Writer, dataDir string) (io.Writer, func() error, error) {
	if w != nil {
		return w, func() error { return nil }, nil
	}
	path := filepath.Join(filepath.Dir(dataDir), "postgres.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("pglocal: open server log: %w", err)
	}
	return f, f.Close, nil
}

// startChild starts initdb or the postmaster so that the kernel sends it
// SIGINT if Parley dies without calling Stop (a crash, a test that panics
// or times out), and no orphaned server keeps the data directory locked.
// SIGINT, not SIGKILL: it is a fast shutdown, which leaves the persistent
// data directory of `parley dev` with no crash recovery to do, and initdb
// removes its half-made cluster on it.
func startChild(cmd *exec.Cmd) error { return localproc.Start(cmd, os.Interrupt) }

// launch starts the postmaster and waits until it serves connections.
func launch(ctx context.Context, binDir, dataDir string, port int, acct *account, ephemeral bool, log io.Writer) (*Server, error) {
	// Settings go on the command line rather than into postgresql.conf, so
	// a persistent data directory always runs with what this code says.
	args := []string{
		"-D", dataDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		// No Unix socket: its default directory may not be writable and
		// its path is limited to about 107 bytes.
		"-c", "unix_socket_directories=",
		// Output goes to stderr, which Start forwards to Options.Log.
		"-c", "logging_collector=off",
		"-c", "log_destination=stderr",
		// A test package runs many service instances at once, each with
		// its pool, River's notifier and the agent listener: Postgres's
		// default of 100 connections is too few.
		"-c", "max_connections=400",
	}
	if ephemeral {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	// Not CommandContext: ctx bounds the start, not the server's life.
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	tail := newLogTail(log, tailSize)
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.Dir = dataDir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = sysProcAttr(acct)
	// Backends inherit the output pipe; after a kill they may hold it a
	// moment longer than the postmaster lives.
	cmd.WaitDelay = 5 * time.Second
	if err := startChild(cmd); err != nil {
		return nil, fmt.Errorf("pglocal: start postgres: %w", err)
	}
	s := &Server{dataDir: dataDir, port: port, cmd: cmd, tail: tail, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		return nil, errors.Join(err, s.halt())
	}
	return s, nil
}

// waitReady polls until the server accepts connections, it exits, or the
// start-up deadline passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-s.exited:
			err := fmt.Errorf("pglocal: postgres exited during start-up (%v):\n%s", s.waitErr, s.tail)
			if strings.Contains(s.tail.String(), "could not bind") {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("pglocal: postgres did not accept connections on 127.0.0.1:%d (%w; last attempt: %v):\n%s",
				s.port, context.Cause(ctx), lastErr, s.tail)
		case <-tick.C:
		}
		// Connecting before the postmaster says it is ready only fills the
		// log with "the database system is starting up".
		if holder, err := readLock(s.dataDir); err == nil && holder.pid == s.cmd.Process.Pid && holder.status != "" && holder.status != "ready" {
			continue
		}
		if lastErr = s.probe(ctx); lastErr == nil {
			return nil
		}
	}
}

// probe connects once and checks that the server on the port is this one
// and not another that took the port first (whose data directory differs).
func (s *Server) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		return err
	}
	if !sameDir(dataDir, s.dataDir) {
		return fmt.Errorf("127.0.0.1:%d is served by another PostgreSQL (data directory %s)", s.port, dataDir)
	}
	return nil
}

// URL returns a connection URL for database on this server.
func (s *Server) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name unless it exists and returns its URL.
// Names longer than Postgres's 63-byte limit are refused, because Postgres
// would silently truncate them and the URL would name another database.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if name == "" || len(name) > 63 {
		return "", fmt.Errorf("pglocal: database name %q must be 1 to 63 bytes", name)
	}
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pglocal: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("pglocal: look up database %s: %w", name, err)
	}
	if !exists {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		// 42P04 duplicate_database: created concurrently, which is fine.
		if pgErr := (*pgconn.PgError)(nil); err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
			return "", fmt.Errorf("pglocal: create database %s: %w", name, err)
		}
	}
	return s.URL(name), nil
}

// Stop shuts the server down fast (open transactions are rolled back, a
// checkpoint is written) and waits until it has exited, so the data directory
// is free for the next Start. A server that does not stop within 30 seconds
// is killed with its backends. Calling Stop again returns the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.halt()
		if s.closeLog != nil {
			s.stopErr = errors.Join(s.stopErr, s.closeLog())
		}
	})
	return s.stopErr
}

// halt stops the postmaster, killing it if the fast shutdown hangs, and
// reports how it ended. Every wait is bounded.
func (s *Server) halt() error {
	select {
	case <-s.exited:
		return s.exitError()
	default:
	}
	if err := interrupt(s.cmd.Process); err != nil {
		return fmt.Errorf("pglocal: signal postgres: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.exited:
		return s.exitError()
	case <-timer.C:
	}
	_ = killGroup(s.cmd.Process)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("pglocal: postgres (PID %d) survived SIGKILL", s.cmd.Process.Pid)
	}
	return fmt.Errorf("pglocal: postgres did not shut down within %v and was killed:\n%s", stopTimeout, s.tail)
}

// exitError explains a postmaster exit other than a clean shutdown.
func (s *Server) exitError() error {
	if s.waitErr == nil {
		return nil
	}
	return fmt.Errorf("pglocal: postgres exited: %w:\n%s", s.waitErr, s.tail)
}

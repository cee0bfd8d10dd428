// Package pgtest gives each test package its own migrated PostgreSQL
// database, so packages run in parallel under `go test ./...` and leave
// nothing behind.
//
// With DATABASE_URL set, the database is created on that server; otherwise
// a throwaway server is started from the machine's PostgreSQL binaries
// (see pglocal) and removed afterwards. Without either, the tests fail with
// instructions: a missing database is a broken setup, not a reason to skip.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// or, in a package whose tests also use Redis (redistest),
//
//	func TestMain(m *testing.M) { pgtest.MainWith(m, redistest.Setup) }
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"github.com/parleyhq/parley/internal/leaktest"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/db"
)

// setupTimeout bounds starting a server, creating and migrating a database.
const setupTimeout = 2 * time.Minute

// The package's test environment. Main sets it before any test runs; it is
// read-only afterwards, so tests may read it in parallel.
var (
	// adminURL names a database on the server for CREATE and DROP DATABASE.
	adminURL string
	// packageDB is the name of the package's migrated database.
	packageDB string
	// packageURL is its connection URL.
	packageURL string
)

// extraDatabases numbers the databases NewDatabase creates.
var extraDatabases atomic.Int64

// Main runs a package's tests against a fresh, migrated database and removes
// it afterwards, then exits with the tests' status. It exits with status 1
// when no database can be set up, or when cleaning up fails.
func Main(m *testing.M) {
	os.Exit(leaktest.Check(Run(m)))
}

// MainWith is Main for a package whose tests also use other helpers: each
// setup (such as redistest.Setup) runs first, and the teardown it returns
// runs after the tests and the database's clean-up.
func MainWith(m *testing.M, setups ...func() (teardown func())) {
	teardowns := make([]func(), 0, len(setups))
	for _, setup := range setups {
		teardowns = append(teardowns, setup())
	}
	code := Run(m)
	for _, teardown := range slices.Backward(teardowns) {
		teardown()
	}
	os.Exit(leaktest.Check(code))
}

// Run is Main without the exit, for a TestMain that also sets up other
// services (see redistest.Setup); it returns the exit status.
func Run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	teardown, err := setup(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: clean up: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// setup finds or starts a server and creates the package database. On
// error it has already undone what it did.
func setup(ctx context.Context) (teardown func() error, err error) {
	var undo []func() error
	teardown = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, teardown())
		}
	}()

	// Test helpers read DATABASE_URL directly: internal/config validates a
	// whole server configuration, which tests do not have.
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		srv, dir, err := startServer(ctx)
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() error { return errors.Join(srv.Stop(), os.RemoveAll(dir)) })
		admin = srv.URL("postgres")
	} else {
		// Refuse a connection string pgtest cannot point at another
		// database before touching the server.
		if _, err := withDatabase(admin, ""); err != nil {
			return nil, err
		}
		sweepDatabases(ctx, admin)
		warnFewConnections(ctx, admin)
	}

	name := packageDatabaseName(time.Now())
	dbURL, err := createDatabase(ctx, admin, name)
	if err != nil {
		return nil, err
	}
	// Also drops NewDatabase's databases (name_N) that a test's clean-up
	// could not drop.
	undo = append(undo, func() error { return dropDatabase(admin, name, true) })
	if err := db.MigrateUp(ctx, dbURL, nil); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", name, err)
	}
	adminURL, packageDB, packageURL = admin, name, dbURL
	return teardown, nil
}

// URL returns the package database's URL. The database is migrated and
// shared by the package's tests; a test that needs a database of its own
// uses NewDatabase.
func URL(tb testing.TB) string {
	tb.Helper()
	requireMain(tb)
	return packageURL
}

// Pool returns a connection pool on the package database, closed when the
// test ends.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return PoolFor(tb, nil)
}

// PoolFor is Pool with afterConnect run on every new connection, as a pool
// of store.Open runs store.PrepareConn (pgtest cannot import the store,
// whose tests use it). A nil afterConnect runs nothing.
func PoolFor(tb testing.TB, afterConnect func(context.Context, *pgx.Conn) error) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(URL(tb))
	if err != nil {
		tb.Fatalf("pgtest: pool: %v", err)
	}
	cfg.AfterConnect = afterConnect
	pool, err := pgxpool.NewWithConfig(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		tb.Fatalf("pgtest: ping %s: %v", packageDB, err)
	}
	return pool
}

// NewDatabase creates another migrated database on the same server, for a
// test that must not see other tests' rows, and returns its URL. It is
// dropped when the test ends, even with connections still open.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	requireMain(tb)
	name := fmt.Sprintf("%s_%d", packageDB, extraDatabases.Add(1))
	ctx, cancel := context.WithTimeout(tb.Context(), setupTimeout)
	defer cancel()
	dbURL, err := createDatabase(ctx, adminURL, name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := dropDatabase(adminURL, name, false); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	if err := db.MigrateUp(ctx, dbURL, nil); err != nil {
		tb.Fatalf("pgtest: migrate %s: %v", name, err)
	}
	return dbURL
}

// ServerURL returns the URL of database on the package database's server,
// for tests that create and drop databases of their own.
func ServerURL(tb testing.TB, database string) string {
	tb.Helper()
	requireMain(tb)
	u, err := withDatabase(adminURL, database)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return u
}

// requireMain fails the test when the package's TestMain does not call Main,
// the only way a database comes to exist.
func requireMain(tb testing.TB) {
	tb.Helper()
	if packageURL == "" {
		tb.Fatal("pgtest: no test database; add this to the package's tests:\n\tfunc TestMain(m *testing.M) { pgtest.Main(m) }")
	}
}

// withDatabase returns serverURL with its database replaced, keeping user,
// password, host and parameters.
func withDatabase(serverURL, database string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL is not quoted: it may hold a password.
		return "", errors.New("DATABASE_URL must be a URL like postgres://user:password@host:5432/postgres?sslmode=disable")
	}
	u.Path, u.RawPath = "/"+database, ""
	return u.String(), nil
}

// minConnections is how many connections a server shared by a whole
// `go test ./...` should allow: internal/rpc alone runs two tests at once,
// each with several servers, each with its pool, River's listener and the
// agent's LISTEN loop. pgtest's own servers allow 400.
const minConnections = 200

// warnFewConnections tells the developer, once per package, when the
// server at DATABASE_URL allows fewer connections than the tests may open
// at once: their failures then answer "unavailable: the database is
// unavailable", which looks like a bug and is not.
func warnFewConnections(ctx context.Context, adminURL string) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return // setup reports it
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, "SELECT current_setting('max_connections')::int").Scan(&n); err == nil && n < minConnections {
		fmt.Fprintf(os.Stderr, "pgtest: warning: the server at DATABASE_URL allows %d connections; the tests may open up to %d at once "+
			"and then fail with \"the database is unavailable\". Raise it (ALTER SYSTEM SET max_connections = 400, then restart) "+
			"or unset DATABASE_URL to let pgtest start its own server.\n", n, minConnections)
	}
}

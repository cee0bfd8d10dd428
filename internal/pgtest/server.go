package pgtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/pglocal"
)

const (
	// namePrefix starts every database pgtest creates, so leftovers are
	// recognisable on a shared server.
	namePrefix = "parley_test_"
	// tempPrefix starts every throwaway server's temporary directory.
	tempPrefix = "parley-pgtest-"
	// staleDatabaseAfter is when a database left on a shared server by a
	// crashed run may be dropped: no test run lasts that long.
	staleDatabaseAfter = 24 * time.Hour
	// staleDirAfter is when a crashed run's temporary directory may be
	// removed: by then its server would have started, and a directory
	// whose server runs is never removed.
	staleDirAfter = 10 * time.Minute
)

// startServer starts a throwaway server in a new temporary directory.
func startServer(ctx context.Context) (*pglocal.Server, string, error) {
	binDir, err := pglocal.FindBinaries()
	if err != nil {
		return nil, "", fmt.Errorf("this package's tests need PostgreSQL: DATABASE_URL is unset, so pgtest starts a throwaway server, but %w", err)
	}
	sweepTempDirs()
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, "", err
	}
	// When tests run as root the server runs as the postgres user, which
	// must be able to enter the directory; 0711 lets it in without listing.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, "", errors.Join(err, os.RemoveAll(dir))
	}
	// The server log goes to dir/postgres.log; a failed start quotes it.
	srv, err := pglocal.Start(ctx, pglocal.Options{
		DataDir:   filepath.Join(dir, "data"),
		Ephemeral: true,
		BinDir:    binDir,
	})
	if err != nil {
		return nil, "", errors.Join(err, os.RemoveAll(dir))
	}
	return srv, dir, nil
}

// createDatabase creates name on the server of adminURL and returns its URL.
func createDatabase(ctx context.Context, adminURL, name string) (string, error) {
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to the server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s (the role needs CREATEDB): %w", name, err)
	}
	return dbURL, nil
}

// dropDatabase drops name, and with children also the name_N databases
// NewDatabase made from it. FORCE ends connections a test left open (it
// needs PostgreSQL 13 or later).
func dropDatabase(adminURL, name string, children bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: connect: %w", name, err)
	}
	defer conn.Close(ctx)
	names := []string{name}
	if children {
		// LIKE treats _ as a wildcard; escape the ones in the name.
		pattern := strings.ReplaceAll(name, "_", `\_`) + `\_%`
		rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)
		if err != nil {
			return fmt.Errorf("list databases: %w", err)
		}
		more, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("list databases: %w", err)
		}
		names = append(more, name)
	}
	var errs []error
	for _, n := range names {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// packageDatabaseName names the package database: recognisable (prefix and
// package), dated (so sweepDatabases can tell a leftover) and unique (so
// parallel runs of the same package do not collide). It stays well under
// Postgres's 63-byte limit, leaving room for NewDatabase's _N suffix.
func packageDatabaseName(now time.Time) string {
	pkg := filepath.Base(os.Args[0])
	pkg = strings.TrimSuffix(strings.TrimSuffix(pkg, ".exe"), ".test")
	pkg = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, pkg)
	if len(pkg) > 20 {
		pkg = pkg[:20]
	}
	random := strings.ToLower(rand.Text()[:6])
	return fmt.Sprintf("%s%s_%08x_%s", namePrefix, pkg, now.Unix(), random)
}

// testDatabase matches the names packageDatabaseName and NewDatabase make,
// capturing the creation time.
var testDatabase = regexp.MustCompile(`^` + namePrefix + `[a-z0-9_]*_([0-9a-f]{8})_[a-z2-7]{6}(_[0-9]+)?$`)

// sweepDatabases drops databases left on a shared server by runs that
// crashed before cleaning up (a panic or a -timeout skips Main's clean-up).
// Only old ones are dropped, and without FORCE, so a database in use is
// kept. It is best effort: failures are ignored.
func sweepDatabases(ctx context.Context, adminURL string) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return // createDatabase reports the problem
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'parley\_test\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		m := testDatabase.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		created, _ := strconv.ParseInt(m[1], 16, 64)
		if time.Since(time.Unix(created, 0)) > staleDatabaseAfter {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
		}
	}
}

// sweepTempDirs removes throwaway servers' directories left by runs that
// crashed. On Linux such a server has already shut down (pglocal asks the
// kernel to stop it when the test binary dies); a directory whose server
// still runs, or that is too new to have a server yet, is kept. It is best
// effort: failures are ignored.
func sweepTempDirs() {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleDirAfter {
			continue
		}
		dir := filepath.Join(os.TempDir(), e.Name())
		if !pglocal.Running(filepath.Join(dir, "data")) {
			_ = os.RemoveAll(dir)
		}
	}
}

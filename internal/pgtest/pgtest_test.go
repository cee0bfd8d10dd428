package pgtest_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// connect opens a connection closed when the test ends.
func connect(tb testing.TB, dbURL string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// databaseName returns the database a URL names.
func databaseName(tb testing.TB, dbURL string) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// migrated reports whether the database behind q holds Parley's schema.
func migrated(tb testing.TB, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) bool {
	tb.Helper()
	var table *string
	if err := q.QueryRow(tb.Context(), "SELECT to_regclass('parley.conversations')::text").Scan(&table); err != nil {
		tb.Fatal(err)
	}
	return table != nil
}

func TestPool(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	if !migrated(t, pool) {
		t.Error("parley.conversations missing from the package database")
	}
	var name string
	if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "parley_test_pgtest_") {
		t.Errorf("package database = %q, want a parley_test_pgtest_ name", name)
	}
}

func TestNewDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("OK", func(t *testing.T) {
		dbURL := pgtest.NewDatabase(t)
		if dbURL == pgtest.URL(t) {
			t.Fatal("NewDatabase returned the package database")
		}
		conn := connect(t, dbURL)
		if !migrated(t, conn) {
			t.Error("parley.conversations missing from the new database")
		}
		// Rows written here stay here.
		if _, err := conn.Exec(ctx, "INSERT INTO parley.conversations (user_id, title) VALUES (gen_random_uuid(), 'isolated')"); err != nil {
			t.Fatal(err)
		}
		var leaked bool
		if err := pgtest.Pool(t).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM parley.conversations WHERE title = 'isolated')").Scan(&leaked); err != nil {
			t.Fatal(err)
		}
		if leaked {
			t.Error("a row written to the new database shows in the package database")
		}
	})
	t.Run("DroppedAfterTest", func(t *testing.T) {
		var name string
		var open *pgx.Conn
		t.Run("Create", func(t *testing.T) {
			dbURL := pgtest.NewDatabase(t)
			name = databaseName(t, dbURL)
			// A connection still open when the test ends must not keep
			// the database alive.
			var err error
			if open, err = pgx.Connect(ctx, dbURL); err != nil {
				t.Fatal(err)
			}
		})
		if open != nil {
			defer open.Close(context.Background())
		}
		var exists bool
		if err := pgtest.Pool(t).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s still exists after its test ended", name)
		}
	})
}

func TestServerURL(t *testing.T) {
	t.Parallel()
	name := databaseName(t, pgtest.URL(t))
	var got string
	if err := connect(t, pgtest.ServerURL(t, name)).QueryRow(t.Context(), "SELECT current_database()").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != name {
		t.Errorf("ServerURL(%q) connects to %q", name, got)
	}
}

package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// TestStatementTimeout: on every connection of a pool from store.Open, the
// server cancels a statement that runs longer than Options.StatementTimeout;
// without one, the server's setting applies.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	open := func(t *testing.T, opts store.Options) *store.Store {
		t.Helper()
		st, err := store.Open(t.Context(), pgtest.URL(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		st := open(t, store.Options{StatementTimeout: 200 * time.Millisecond})
		// The query would run for a minute; the context gives up after
		// 10 s, so only the server's timeout ends it in time.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		begin := time.Now()
		_, err := st.Pool().Exec(ctx, "SELECT pg_sleep(60)")
		took := time.Since(begin)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("err = %v after %v, want query_canceled (57014) by the statement timeout", err, took)
		}
		if took > 5*time.Second {
			t.Errorf("cancelled after %v, want about 200ms", took)
		}
		// Every connection has it, set at connect time (source "client"),
		// not only the first.
		var conns []*pgxpool.Conn
		for range 3 {
			c, err := st.Pool().Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if got, want := statementTimeout(t, c), (setting{"200", "client"}); got != want {
				t.Errorf("statement_timeout on a pooled connection = %+v, want %+v", got, want)
			}
		}
		for _, c := range conns {
			c.Release()
		}
	})
	t.Run("ZeroKeepsTheServerSetting", func(t *testing.T) {
		t.Parallel()
		st := open(t, store.Options{})
		if got := statementTimeout(t, st.Pool()); got.source == "client" {
			t.Errorf("statement_timeout = %+v with no option, want the server's (or role's) setting", got)
		}
	})
}

// setting is a row of pg_settings: the value (in milliseconds for
// statement_timeout) and where it came from.
type setting struct{ value, source string }

func statementTimeout(tb testing.TB, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) setting {
	tb.Helper()
	var s setting
	if err := q.QueryRow(tb.Context(), "SELECT setting, source FROM pg_settings WHERE name = 'statement_timeout'").Scan(&s.value, &s.source); err != nil {
		tb.Fatal(err)
	}
	return s
}

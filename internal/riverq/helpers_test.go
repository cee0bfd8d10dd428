package riverq_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/riverq"
)

// TestMain gives the package its database and, when the tests pass, checks
// that no goroutine outlived them: every Queue is stopped and every pool
// closed.
func TestMain(m *testing.M) {
	pgtest.Main(m) // checks for leaked goroutines too (internal/leaktest)
}

// waitBound bounds every wait for a delivery; reaching it fails the test
// (it is a hang detector, not a latency assertion).
const waitBound = 30 * time.Second

// testConfig is a Queue configuration for tests: River's defaults for
// timing, a short step timeout.
func testConfig(tb testing.TB) riverq.Config {
	return riverq.Config{StepTimeout: 5 * time.Second, Log: testLogger(tb)}
}

// servicePool opens a pool on a database of its own (River's tables are
// shared by every Queue on a database, so tests must not share one), with
// every connection running as db.ServiceRole: the tests also prove the
// role's grants are enough for River. Closed when the test ends.
func servicePool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(tb))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE "+pgx.Identifier{db.ServiceRole}.Sanitize())
		return err
	}
	pool, err := pgxpool.NewWithConfig(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// startQueue builds and starts a Queue, stopped when the test ends (before
// its pool closes: cleanups run last first).
func startQueue(tb testing.TB, pool *pgxpool.Pool, h agent.Handler, cfg riverq.Config) *riverq.Queue {
	tb.Helper()
	q, err := riverq.New(pool, h, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := q.Start(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			tb.Errorf("stop: %v", err)
		}
	})
	return q
}

// enqueue commits a transaction that enqueues t at at.
func enqueue(tb testing.TB, pool *pgxpool.Pool, q *riverq.Queue, t agent.Task, at time.Time) {
	tb.Helper()
	ctx := tb.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := q.EnqueueTx(ctx, tx, t, at); err != nil {
		tb.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		tb.Fatal(err)
	}
}

func newTask() agent.Task { return agent.Task{RunID: uuid.New(), Step: 1, Attempt: 1} }

// delivery is one call of a test handler.
type delivery struct {
	task agent.Task
	at   time.Time
}

// recorder is a handler that reports every delivery on a channel and
// answers with the next of its planned results (nil once they run out).
type recorder struct {
	deliveries chan delivery
	mu         sync.Mutex
	results    []error
}

func newRecorder(results ...error) *recorder {
	return &recorder{deliveries: make(chan delivery, 1000), results: results}
}

func (r *recorder) handle(_ context.Context, t agent.Task) error {
	r.deliveries <- delivery{task: t, at: time.Now()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return nil
	}
	err := r.results[0]
	r.results = r.results[1:]
	return err
}

// next waits for the next delivery.
func (r *recorder) next(tb testing.TB) delivery {
	tb.Helper()
	select {
	case d := <-r.deliveries:
		return d
	case <-time.After(waitBound):
		tb.Fatalf("no delivery within %s", waitBound)
		return delivery{}
	}
}

// jobRow is what River recorded of a task's job.
type jobRow struct {
	State    string
	Attempt  int
	Errors   int
	Snoozes  int
	Finished bool
}

// jobsOf returns the jobs of task t.
func jobsOf(tb testing.TB, pool *pgxpool.Pool, t agent.Task) []jobRow {
	tb.Helper()
	rows, err := pool.Query(tb.Context(), `
		SELECT state::text, attempt, coalesce(array_length(errors, 1), 0),
		       coalesce((metadata->>'snoozes')::int, 0), finalized_at IS NOT NULL
		FROM parley.river_job
		WHERE kind = $1 AND args->>'run_id' = $2 AND (args->>'step')::int = $3 AND (args->>'attempt')::int = $4
		ORDER BY id`, riverq.Kind, t.RunID.String(), t.Step, t.Attempt)
	if err != nil {
		tb.Fatal(err)
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[jobRow])
	if err != nil {
		tb.Fatal(err)
	}
	return jobs
}

// testLogger fails the test on any error River or the queue logs (River's
// warnings are logged through).
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(&failOnError{tb: tb, Handler: slog.NewTextHandler(tWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn})})
}

type failOnError struct {
	slog.Handler
	tb testing.TB
}

func (h *failOnError) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.tb.Errorf("logged an error: %s", r.Message)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *failOnError) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &failOnError{Handler: h.Handler.WithAttrs(attrs), tb: h.tb}
}

func (h *failOnError) WithGroup(name string) slog.Handler {
	return &failOnError{Handler: h.Handler.WithGroup(name), tb: h.tb}
}

// tWriter writes log lines to the test's log.
type tWriter struct{ tb testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

// Package riverq delivers agent tasks (agent.Task) through River, a job
// queue kept in Parley's own Postgres database: a task is a row inserted in
// the transaction that decided it is due, so it exists exactly when that
// transaction commits, and it is worked by whichever Parley instance
// fetches it first.
//
// River makes progress only while at least one instance runs a started
// Queue. Jobs wait in the database while none does; a job that was running
// in an instance that died stays "running" until another instance's River
// leader rescues it, RescueAfter after its attempt began (plus up to the
// rescuer's 30 s period), and delivers it again. Scheduled jobs, retries
// due later than 5 s and that rescue are the leader's work; every Queue is
// eligible to lead, and leadership moves within seconds when its holder
// stops.
//
// River needs LISTEN/NOTIFY to start work within milliseconds of a commit:
// the pool must reach Postgres directly or through a session-mode pooler
// (not PgBouncer's transaction mode), and each Queue holds one connection
// of the pool for listening.
package riverq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/agent"
)

// Kind is the River job kind of an agent task, and QueueName the one River
// queue they go through.
const (
	Kind      = "parley_agent_step"
	QueueName = "parley_agent"
)

// Latency tuning. A commit's NOTIFY wakes every listening Queue, which
// fetches at once (River debounces fetches on the leading edge); the
// cooldown only spaces fetches out under a burst, and also how often one
// Queue sends NOTIFY for its inserts (River sends one per cooldown per
// queue). A job whose insert was not announced, or whose snooze ends, is
// found by the poll.
const (
	fetchCooldown     = time.Millisecond
	fetchPollInterval = 100 * time.Millisecond
	// stepTimeoutMargin is how much longer than a step River lets a job
	// run before cancelling its context: the step enforces its own timeout
	// and still has to save its outcome.
	stepTimeoutMargin = 30 * time.Second
)

// Config tunes a Queue. Zero values take the defaults given per field.
type Config struct {
	// Workers is how many tasks one Queue runs at once (default 20); a
	// negative count makes an insert-only Queue, which queues tasks but
	// runs none (an instance that serves the API and leaves the steps to
	// others).
	Workers int
	// StepTimeout is the agent's bound on one step; a job's context is
	// cancelled StepTimeout + 30 s after its attempt began. Required.
	StepTimeout time.Duration
	// RescueAfter is how long a job may stay running before River's leader
	// considers its instance dead and delivers it again (River's
	// RescueStuckJobsAfter). It must be at least StepTimeout + 30 s
	// (default StepTimeout + 1 min).
	RescueAfter time.Duration
	// MaxAttempts is how many failed deliveries (handler errors, not
	// BusyError snoozes) a task gets before River discards it (default 10).
	MaxAttempts int
	// Log receives River's warnings and errors, and a line per failed
	// delivery. Nil discards them.
	Log *slog.Logger
}

// Queue is Parley's default task queue: a River client working agent
// tasks with a Handler.
type Queue struct {
	client     *river.Client[pgx.Tx]
	log        *slog.Logger
	insertOnly bool // Workers < 0: Start and Stop do nothing
}

// New builds a Queue on pool, whose connections must have the privileges
// of db.ServiceRole (or own River's tables, which the migrations create in
// db.Schema). Nothing runs until Start.
func New(pool *pgxpool.Pool, h agent.Handler, cfg Config) (*Queue, error) {
	if h == nil {
		return nil, errors.New("riverq: nil handler")
	}
	if cfg.StepTimeout <= 0 {
		return nil, errors.New("riverq: Config.StepTimeout must be set")
	}
	jobTimeout := cfg.StepTimeout + stepTimeoutMargin
	rescueAfter := cfg.RescueAfter
	if rescueAfter == 0 {
		rescueAfter = cfg.StepTimeout + time.Minute
	}
	if rescueAfter < jobTimeout {
		return nil, fmt.Errorf("riverq: RescueAfter %s is shorter than a job's timeout %s (StepTimeout + %s): running jobs would be delivered twice", rescueAfter, jobTimeout, stepTimeoutMargin)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &worker{handle: h, log: log}); err != nil {
		return nil, fmt.Errorf("riverq: %w", err)
	}
	queues := map[string]river.QueueConfig{QueueName: {MaxWorkers: cmpOr(cfg.Workers, 20)}}
	if cfg.Workers < 0 {
		queues = nil
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:               db.Schema,
		Queues:               queues,
		Workers:              workers,
		FetchCooldown:        fetchCooldown,
		FetchPollInterval:    fetchPollInterval,
		JobTimeout:           jobTimeout,
		RescueStuckJobsAfter: rescueAfter,
		MaxAttempts:          cmpOr(cfg.MaxAttempts, 10),
		// REINDEX needs to own the table, which the service role does not
		// (see db/river.go); autovacuum keeps river_job's indexes in shape.
		ReindexerIndexNames: []string{},
		Logger:              slog.New(warnAndAbove{log.Handler()}),
	})
	if err != nil {
		return nil, fmt.Errorf("riverq: %w", err)
	}
	return &Queue{client: client, log: log, insertOnly: queues == nil}, nil
}

// EnqueueTx adds t to the queue inside tx: it is delivered once tx commits,
// at `at` or as soon as possible if `at` is not in the future, and never if
// tx rolls back. A scheduled task becomes due within 5 s after `at` (River's
// leader moves due jobs every 5 s).
//
// Enqueueing a task that is already queued, running or completed (the same
// run, step and attempt) adds nothing: River keeps one job per task while
// one exists in those states (completed jobs are kept 24 h). A task whose
// job was discarded after MaxAttempts failures can be enqueued again.
func (q *Queue) EnqueueTx(ctx context.Context, tx pgx.Tx, t agent.Task, at time.Time) error {
	opts := &river.InsertOpts{}
	if at.After(time.Now()) {
		opts.ScheduledAt = at
	}
	if _, err := q.client.InsertTx(ctx, tx, stepArgs{t}, opts); err != nil {
		return fmt.Errorf("riverq: enqueue %s: %w", t.DedupKey(), err)
	}
	return nil
}

// Start begins fetching and working tasks in the background. ctx supplies
// values only: the queue runs until Stop, so that the end of the caller's
// context (a signal, say) leaves running steps to the graceful Stop instead
// of cancelling them at once.
func (q *Queue) Start(ctx context.Context) error {
	if q.insertOnly {
		return nil
	}
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("riverq: start: %w", err)
	}
	return nil
}

// hardStopTimeout bounds the wait for cancelled handlers to return once
// Stop's context is done: the agent's steps give themselves back in
// milliseconds, and Cloud Run kills the instance ten seconds after
// SIGTERM.
const hardStopTimeout = 2 * time.Second

// Stop stops fetching and waits for running handlers to return until ctx
// is done; then it cancels their contexts and waits up to 2 s more. A
// handler that returns its context's error after that cancellation leaves
// its task to be delivered again without counting an attempt. Stop returns
// an error only when handlers still run after that.
func (q *Queue) Stop(ctx context.Context) error {
	if q.insertOnly {
		return nil
	}
	err := q.client.Stop(ctx)
	if err == nil {
		return nil
	}
	q.log.WarnContext(ctx, "riverq: running tasks outlived the stop deadline; cancelling them", "error", err)
	hardCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hardStopTimeout)
	defer cancel()
	if err := q.client.StopAndCancel(hardCtx); err != nil {
		return fmt.Errorf("riverq: stop: handlers still running after cancellation: %w", err)
	}
	return nil
}

// stepArgs is a task as a River job's arguments: its JSON is the task's.
type stepArgs struct {
	agent.Task
}

// Kind names the worker River hands the job to.
func (stepArgs) Kind() string { return Kind }

// InsertOpts puts every task in Parley's queue and makes enqueueing a task
// twice harmless (see EnqueueTx).
func (stepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueName, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// worker runs a delivered task with the handler and turns its answer into
// River's outcome.
type worker struct {
	river.WorkerDefaults[stepArgs]
	handle agent.Handler
	log    *slog.Logger
}

// Work returns nil (complete), a snooze for a BusyError (deliver again
// after RetryAfter, no attempt counted) or the handler's error (River
// retries with its backoff until MaxAttempts, then discards the job).
func (w *worker) Work(ctx context.Context, job *river.Job[stepArgs]) error {
	err := w.handle(ctx, job.Args.Task)
	if err == nil {
		return nil
	}
	if busy, ok := agent.IsBusy(err); ok {
		return river.JobSnooze(max(busy.RetryAfter, 0))
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// Stop cancelled it: River puts the task back without counting
		// the delivery.
		return err
	}
	attrs := []any{
		"run_id", job.Args.RunID, "step", job.Args.Step, "attempt", job.Args.Attempt,
		"delivery", job.Attempt, "max_deliveries", job.MaxAttempts, "error", err,
	}
	if job.Attempt >= job.MaxAttempts {
		w.log.ErrorContext(ctx, "riverq: agent task failed for the last time; discarded", attrs...)
	} else {
		w.log.WarnContext(ctx, "riverq: agent task failed; River will deliver it again", attrs...)
	}
	return err
}

// warnAndAbove passes on River's warnings and errors only: River logs
// every job's progress at info.
type warnAndAbove struct{ slog.Handler }

func (h warnAndAbove) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn && h.Handler.Enabled(ctx, level)
}

func (h warnAndAbove) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnAndAbove{h.Handler.WithAttrs(attrs)}
}

func (h warnAndAbove) WithGroup(name string) slog.Handler {
	return warnAndAbove{h.Handler.WithGroup(name)}
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

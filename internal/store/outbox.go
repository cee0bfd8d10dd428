package store

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// TaskPublisher publishes a task to a push queue (QStash); a repeated
// publish of the same task must be harmless (the queue de-duplicates).
type TaskPublisher interface {
	PublishTask(ctx context.Context, t agent.Task, notBefore time.Time) error
}

// Outbox is the TaskSink of push queues: a task is an outbox row written
// in the transaction that saves the step, published after commit, and
// published again by Relay when that did not happen (the instance died
// in between, or the queue was unreachable).
type Outbox struct {
	s   *Store
	pub TaskPublisher
	log *slog.Logger
}

// Outbox returns the outbox that publishes through pub.
func (s *Store) Outbox(pub TaskPublisher, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outbox{s: s, pub: pub, log: log}
}

// EnqueueTx implements TaskSink.
func (o *Outbox) EnqueueTx(ctx context.Context, tx pgx.Tx, t agent.Task, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	return o.s.q.WithTx(tx).InsertAgentOutbox(ctx, sqlcgen.InsertAgentOutboxParams{
		RunID: t.RunID, Step: int32(t.Step), Attempt: int32(t.Attempt), NotBefore: at,
	})
}

// AfterCommit implements AfterCommitter: it publishes what the
// transaction queued, now. A failure is left to Relay.
func (o *Outbox) AfterCommit(ctx context.Context, _ []agent.Task) {
	if _, err := o.publish(ctx, 0); err != nil {
		o.log.Warn("agent outbox: publish failed; the relay retries", "err", err)
	}
}

// Relay publishes, every interval until ctx ends, the rows still
// unpublished that were written more than olderThan ago (long enough for
// their own AfterCommit to have had its chance). It runs once at once, so
// a task stranded by a crash goes out as soon as an instance starts again.
func (o *Outbox) Relay(ctx context.Context, interval, olderThan time.Duration) {
	for {
		if n, err := o.publish(ctx, olderThan); err != nil && ctx.Err() == nil {
			o.log.Warn("agent outbox: relay failed", "err", err)
		} else if n > 0 {
			o.log.Info("agent outbox: relayed unpublished tasks", "tasks", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// publish publishes unpublished rows written more than age ago (0: any),
// a batch at a time, each row locked while it is published.
func (o *Outbox) publish(ctx context.Context, age time.Duration) (int, error) {
	total := 0
	for range 100 { // at most 100 batches of 50 per call
		n, err := o.publishBatch(ctx, age)
		total += n
		if err != nil || n < 50 {
			return total, err
		}
	}
	return total, nil
}

func (o *Outbox) publishBatch(ctx context.Context, age time.Duration) (int, error) {
	tx, err := o.s.pool.Begin(ctx)
	if err != nil {
		return 0, interpretError(err, "agent outbox")
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it does nothing
	q := o.s.q.WithTx(tx)
	// A row whose transaction is still open is not visible; age keeps the
	// relay off rows their own AfterCommit is publishing right now.
	rows, err := q.ClaimAgentOutbox(ctx, sqlcgen.ClaimAgentOutboxParams{Before: time.Now().Add(-age), MaxRows: 50})
	if err != nil {
		return 0, interpretError(err, "agent outbox")
	}
	var done []int64
	var perr error
	for _, r := range rows {
		t := agent.Task{RunID: r.RunID, Step: int(r.Step), Attempt: int(r.Attempt)}
		if perr = o.pub.PublishTask(ctx, t, r.NotBefore); perr != nil {
			break
		}
		done = append(done, r.ID)
	}
	if len(done) > 0 {
		// What was published is recorded even when ctx ends meanwhile
		// (shutdown): a row published twice is only de-duplicated work.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := q.MarkAgentOutboxPublished(ctx, done); err != nil {
			return 0, interpretError(err, "agent outbox")
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, interpretError(err, "agent outbox")
		}
	}
	return len(done), perr
}

// QStashReplays remembers the QStash message ids already handled
// (qstash.Replays), so a replayed delivery runs nothing.
type QStashReplays struct{ s *Store }

// QStashReplays returns the store's record of handled QStash messages.
func (s *Store) QStashReplays() *QStashReplays { return &QStashReplays{s: s} }

// Seen reports whether messageID was handled and its record is current.
func (r *QStashReplays) Seen(ctx context.Context, messageID string) (bool, error) {
	seen, err := r.s.q.QStashMessageSeen(ctx, messageID)
	return seen, interpretError(err, "qstash message")
}

// Done records messageID as handled until until.
func (r *QStashReplays) Done(ctx context.Context, messageID string, until time.Time) error {
	return interpretError(r.s.q.QStashMessageDone(ctx, sqlcgen.QStashMessageDoneParams{MessageID: messageID, ExpireTime: until}), "qstash message")
}

// Forget deletes the records whose signatures have expired.
func (r *QStashReplays) Forget(ctx context.Context) (int64, error) {
	n, err := r.s.q.ForgetQStashMessages(ctx)
	return n, interpretError(err, "qstash messages")
}

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
		RunID: t.RunID, Step: int32(t.Step), Attempt: int32(t.Attempt), Requeue: int32(t.Requeue), NotBefore: at,
	})
}

// publishTimeout bounds the publishing done right after a commit, which
// runs on the request's path (StartRun, a delivery): past it, the relay
// takes over.
const publishTimeout = 5 * time.Second

// AfterCommit implements AfterCommitter: it publishes the tasks the
// transaction queued, now, within publishTimeout, and marks them
// published. A task it could not publish is left to the relay.
func (o *Outbox) AfterCommit(ctx context.Context, tasks []QueuedTask) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	for _, q := range tasks {
		t := q.Task
		if err := o.pub.PublishTask(ctx, t, q.At); err != nil {
			o.log.Warn("agent outbox: publish failed; the relay retries", "task", t.DedupKey(), "err", err)
			continue
		}
		if err := o.s.q.MarkAgentTaskPublished(ctx, sqlcgen.MarkAgentTaskPublishedParams{
			RunID: t.RunID, Step: int32(t.Step), Attempt: int32(t.Attempt), Requeue: int32(t.Requeue),
		}); err != nil {
			// Published but not marked: the relay publishes it again,
			// which QStash de-duplicates.
			o.log.Warn("agent outbox: cannot mark a published task", "task", t.DedupKey(), "err", err)
		}
	}
}

// Relay publishes, every interval until ctx ends, the rows still
// unpublished that were written more than olderThan ago (long enough for
// their own AfterCommit to have had its chance). It runs once at once, so
// a task stranded by a crash goes out as soon as an instance starts again.
// Published rows are deleted a day later.
func (o *Outbox) Relay(ctx context.Context, interval, olderThan time.Duration) {
	for {
		if n, err := o.publish(ctx, olderThan); err != nil && ctx.Err() == nil {
			o.log.Warn("agent outbox: relay failed", "err", err)
		} else if n > 0 {
			o.log.Info("agent outbox: relayed unpublished tasks", "tasks", n)
		}
		if _, err := o.s.q.ForgetPublishedAgentOutbox(ctx, ptr(time.Now().Add(-24*time.Hour))); err != nil && ctx.Err() == nil {
			o.log.Warn("agent outbox: cannot delete published rows", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func ptr[T any](v T) *T { return &v }

// publish publishes unpublished rows written more than age ago, a batch
// at a time: each batch is claimed for one attempt in a statement of its
// own, published outside any transaction, and its successes marked. A row
// that fails waits for its backoff; the rest go on.
func (o *Outbox) publish(ctx context.Context, age time.Duration) (int, error) {
	total := 0
	for range 100 { // at most 100 batches of 50 per pass
		rows, err := o.s.q.ClaimAgentOutbox(ctx, sqlcgen.ClaimAgentOutboxParams{Before: time.Now().Add(-age), MaxRows: 50})
		if err != nil {
			return total, interpretError(err, "agent outbox")
		}
		var done []int64
		var failed error
		for _, r := range rows {
			t := agent.Task{RunID: r.RunID, Step: int(r.Step), Attempt: int(r.Attempt), Requeue: int(r.Requeue)}
			if err := o.pub.PublishTask(ctx, t, r.NotBefore); err != nil {
				failed = err
				continue
			}
			done = append(done, r.ID)
		}
		if len(done) > 0 {
			// What was published is recorded even when ctx ends meanwhile
			// (shutdown): a row published twice is only de-duplicated work.
			markCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := o.s.q.MarkAgentOutboxPublished(markCtx, done)
			cancel()
			if err != nil {
				return total, interpretError(err, "agent outbox")
			}
		}
		total += len(done)
		if len(rows) < 50 || ctx.Err() != nil {
			return total, failed
		}
	}
	return total, nil
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

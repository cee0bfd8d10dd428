package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// flakyQueue is a push queue that is down until up is closed, and records
// what it accepted.
type flakyQueue struct {
	mu        sync.Mutex
	down      bool
	published []agent.Task
	got       chan struct{}
}

func (q *flakyQueue) PublishTask(_ context.Context, t agent.Task, _ time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down {
		return errors.New("the queue is down")
	}
	q.published = append(q.published, t)
	select {
	case q.got <- struct{}{}:
	default:
	}
	return nil
}

func (q *flakyQueue) setDown(down bool) {
	q.mu.Lock()
	q.down = down
	q.mu.Unlock()
}

func (q *flakyQueue) tasks() []agent.Task {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]agent.Task(nil), q.published...)
}

// A task whose publish failed after its transaction committed (the queue
// was down, or the instance died before publishing) stays in the outbox
// and the relay publishes it; a published row is not published again.
func TestOutboxRelaysWhatWasNotPublished(t *testing.T) {
	// A database of its own: the relay publishes every stranded row.
	st := ownStore(t)
	q := &flakyQueue{down: true, got: make(chan struct{}, 16)}
	outbox := st.Outbox(q, nil)
	agents := st.Agents(outbox)
	ctx := t.Context()

	runID := uuid.New()
	first := agent.Task{RunID: runID, Step: 0, Attempt: 1}
	if _, _, err := agents.CreateRun(ctx, agent.NewRun{ID: runID, UserID: uuid.New(), Goal: "g", Model: "m", Tools: agent.AllTools}, 3, first); err != nil {
		t.Fatal(err)
	}
	if got := q.tasks(); len(got) != 0 {
		t.Fatalf("published %v while the queue was down", got)
	}

	q.setDown(false)
	relayCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		outbox.Relay(relayCtx, time.Hour, 0) // the first pass runs at once
	}()
	select {
	case <-q.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not publish the stranded task")
	}
	stop()
	<-done
	if got := q.tasks(); len(got) != 1 || got[0] != first {
		t.Fatalf("relayed %v, want [%v]", got, first)
	}

	// Published rows are marked: another pass publishes nothing.
	relayCtx, stop = context.WithCancel(ctx)
	done = make(chan struct{})
	go func() {
		defer close(done)
		outbox.Relay(relayCtx, time.Hour, 0)
	}()
	time.Sleep(200 * time.Millisecond) // the first pass of this relay
	stop()
	<-done
	if got := q.tasks(); len(got) != 1 {
		t.Errorf("a second relay published %v again", got)
	}
}

// With the queue up, a task is published right after its transaction
// commits, not at the relay's next pass.
func TestOutboxPublishesAfterCommit(t *testing.T) {
	st := ownStore(t)
	q := &flakyQueue{got: make(chan struct{}, 16)}
	agents := st.Agents(st.Outbox(q, nil))
	runID := uuid.New()
	first := agent.Task{RunID: runID, Step: 0, Attempt: 1}
	if _, _, err := agents.CreateRun(t.Context(), agent.NewRun{ID: runID, UserID: uuid.New(), Goal: "g", Model: "m", Tools: agent.AllTools}, 3, first); err != nil {
		t.Fatal(err)
	}
	if got := q.tasks(); len(got) != 1 || got[0] != first {
		t.Fatalf("published %v on commit, want [%v]", got, first)
	}
}

// ownStore is a store on a new database, closed when the test ends.
func ownStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

package riverq_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/riverq"
)

func TestNew(t *testing.T) {
	t.Parallel()
	pool := servicePool(t)
	h := newRecorder().handle
	tests := []struct {
		name    string
		handler agent.Handler
		cfg     riverq.Config
		wantErr bool
	}{
		{"OK", h, riverq.Config{StepTimeout: time.Minute}, false},
		{"OKRescueAtTheJobTimeout", h, riverq.Config{StepTimeout: time.Minute, RescueAfter: 90 * time.Second}, false},
		{"ErrNoHandler", nil, riverq.Config{StepTimeout: time.Minute}, true},
		{"ErrNoStepTimeout", h, riverq.Config{}, true},
		// River would rescue (deliver again) jobs it still lets run.
		{"ErrRescueBeforeTheJobTimeout", h, riverq.Config{StepTimeout: time.Minute, RescueAfter: 89 * time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := riverq.New(pool, tt.handler, tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Errorf("New: %v, want error %t", err, tt.wantErr)
			}
		})
	}
}

func TestEnqueueTx(t *testing.T) {
	t.Parallel()
	t.Run("Committed", func(t *testing.T) {
		t.Parallel()
		pool, rec := servicePool(t), newRecorder()
		q := startQueue(t, pool, rec.handle, testConfig(t))
		task := newTask()
		enqueue(t, pool, q, task, time.Time{})
		if got := rec.next(t).task; got != task {
			t.Errorf("delivered %+v, want %+v", got, task)
		}
	})
	t.Run("RolledBack", func(t *testing.T) {
		t.Parallel()
		pool, rec := servicePool(t), newRecorder()
		q := startQueue(t, pool, rec.handle, testConfig(t))
		rolledBack, committed := newTask(), newTask()
		tx, err := pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.EnqueueTx(t.Context(), tx, rolledBack, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		enqueue(t, pool, q, committed, time.Time{})
		if got := rec.next(t).task; got != committed {
			t.Errorf("delivered %+v, want only %+v", got, committed)
		}
		// Nothing is left that could ever run it.
		if jobs := jobsOf(t, pool, rolledBack); len(jobs) != 0 {
			t.Errorf("the rolled-back task has jobs %+v", jobs)
		}
	})
	t.Run("Twice", func(t *testing.T) {
		t.Parallel()
		pool, rec := servicePool(t), newRecorder()
		q := startQueue(t, pool, rec.handle, testConfig(t))
		task, after := newTask(), newTask()
		// Twice in one transaction, once more after it ran.
		tx, err := pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.WithoutCancel(t.Context()))
		for range 2 {
			if err := q.EnqueueTx(t.Context(), tx, task, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := rec.next(t).task; got != task {
			t.Fatalf("delivered %+v, want %+v", got, task)
		}
		waitFinished(t, pool, task)
		enqueue(t, pool, q, task, time.Time{})
		// A later task, delivered after the duplicate would have been.
		enqueue(t, pool, q, after, time.Time{})
		if got := rec.next(t).task; got != after {
			t.Errorf("delivered %+v, want the later task %+v: a duplicate ran", got, after)
		}
		if jobs := jobsOf(t, pool, task); len(jobs) != 1 {
			t.Errorf("the task has %d jobs, want 1: %+v", len(jobs), jobs)
		}
	})
	t.Run("Scheduled", func(t *testing.T) {
		t.Parallel()
		pool, rec := servicePool(t), newRecorder()
		q := startQueue(t, pool, rec.handle, testConfig(t))
		task, at := newTask(), time.Now().Add(time.Second)
		enqueue(t, pool, q, task, at)
		d := rec.next(t)
		if d.task != task {
			t.Errorf("delivered %+v, want %+v", d.task, task)
		}
		if d.at.Before(at) {
			t.Errorf("delivered %s before its time", at.Sub(d.at))
		}
	})
	t.Run("PastTimeRunsNow", func(t *testing.T) {
		t.Parallel()
		pool, rec := servicePool(t), newRecorder()
		q := startQueue(t, pool, rec.handle, testConfig(t))
		task := newTask()
		enqueue(t, pool, q, task, time.Now().Add(-time.Hour))
		if got := rec.next(t).task; got != task {
			t.Errorf("delivered %+v, want %+v", got, task)
		}
	})
}

// waitFinished waits until River has recorded the end of every job of
// the task (River records outcomes in batches, shortly after the handler
// returns) and returns them.
func waitFinished(t *testing.T, pool *pgxpool.Pool, task agent.Task) []jobRow {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		jobs := jobsOf(t, pool, task)
		finished := len(jobs) > 0
		for _, j := range jobs {
			finished = finished && j.Finished
		}
		if finished {
			return jobs
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not finished within %s: %+v", waitBound, jobs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHandlerResults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// results are the handler's answers to the first deliveries.
		results     []error
		maxAttempts int
		// deliveries is how many deliveries to wait for; minGap the least
		// time between the first two.
		deliveries int
		minGap     time.Duration
		want       jobRow
	}{
		{"Done", nil, 0, 1, 0, jobRow{State: "completed", Attempt: 1, Finished: true}},
		// A snooze does not count as an attempt.
		{"BusySnoozes", []error{&agent.BusyError{RetryAfter: 300 * time.Millisecond}}, 0, 2, 300 * time.Millisecond,
			jobRow{State: "completed", Attempt: 1, Snoozes: 1, Finished: true}},
		{"WrappedBusySnoozes", []error{errors.Join(errors.New("step 1"), &agent.BusyError{RetryAfter: 0})}, 0, 2, 0,
			jobRow{State: "completed", Attempt: 1, Snoozes: 1, Finished: true}},
		// River's first retry comes about 1 s later.
		{"ErrorRetries", []error{errors.New("save failed")}, 0, 2, 500 * time.Millisecond,
			jobRow{State: "completed", Attempt: 2, Errors: 1, Finished: true}},
		{"ErrorsDiscardAfterMaxAttempts", []error{errors.New("save failed"), errors.New("save failed again")}, 2, 2, 500 * time.Millisecond,
			jobRow{State: "discarded", Attempt: 2, Errors: 2, Finished: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, rec := servicePool(t), newRecorder(tt.results...)
			cfg := testConfig(t)
			cfg.MaxAttempts = tt.maxAttempts
			if tt.name == "ErrorsDiscardAfterMaxAttempts" {
				// The discard is logged as an error, on purpose.
				cfg.Log = nil
			}
			q := startQueue(t, pool, rec.handle, cfg)
			task := newTask()
			enqueue(t, pool, q, task, time.Time{})
			var got []delivery
			for range tt.deliveries {
				d := rec.next(t)
				if d.task != task {
					t.Fatalf("delivered %+v, want %+v", d.task, task)
				}
				got = append(got, d)
			}
			if len(got) > 1 {
				if gap := got[1].at.Sub(got[0].at); gap < tt.minGap {
					t.Errorf("delivered again after %s, want at least %s", gap, tt.minGap)
				}
			}
			if diff := cmp.Diff([]jobRow{tt.want}, waitFinished(t, pool, task)); diff != "" {
				t.Errorf("job (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTwoInstances: two Queues on one database (two instances of the
// service) share the tasks, and each task runs exactly once.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	pool := servicePool(t)
	var mu sync.Mutex
	runs := map[agent.Task]int{}
	done := make(chan struct{}, 100)
	handler := func(_ context.Context, task agent.Task) error {
		mu.Lock()
		runs[task]++
		mu.Unlock()
		done <- struct{}{}
		return nil
	}
	a := startQueue(t, pool, handler, testConfig(t))
	b := startQueue(t, pool, handler, testConfig(t))
	want := map[agent.Task]int{}
	for i := range 50 {
		task := newTask()
		want[task] = 1
		q := a
		if i%2 == 1 {
			q = b
		}
		enqueue(t, pool, q, task, time.Time{})
	}
	for range 50 {
		select {
		case <-done:
		case <-time.After(waitBound):
			t.Fatalf("fewer than 50 deliveries within %s", waitBound)
		}
	}
	stopNow(t, a)
	stopNow(t, b)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, runs); diff != "" {
		t.Errorf("runs per task (-want +got):\n%s", diff)
	}
}

// stopNow stops q gracefully, bounded by waitBound.
func stopNow(t *testing.T, q *riverq.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	if err := q.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	// Stop lets a running handler finish, and its task is done with.
	t.Run("WaitsForRunningHandler", func(t *testing.T) {
		t.Parallel()
		pool := servicePool(t)
		started, release := make(chan struct{}), make(chan struct{})
		var calls int
		var mu sync.Mutex
		returned := false
		handler := func(ctx context.Context, _ agent.Task) error {
			mu.Lock()
			calls++
			mu.Unlock()
			close(started)
			<-release
			mu.Lock()
			returned = true
			mu.Unlock()
			return ctx.Err()
		}
		q := startQueue(t, pool, handler, testConfig(t))
		task := newTask()
		enqueue(t, pool, q, task, time.Time{})
		select {
		case <-started:
		case <-time.After(waitBound):
			t.Fatal("the handler was not called")
		}
		stopped := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			stopped <- q.Stop(ctx)
		}()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while the handler ran", err)
		default:
		}
		close(release)
		if err := <-stopped; err != nil {
			t.Fatalf("stop: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !returned || calls != 1 {
			t.Errorf("after Stop: handler returned %t, called %d times; want true, 1", returned, calls)
		}
		// Completed: no instance will deliver it again.
		if diff := cmp.Diff([]jobRow{{State: "completed", Attempt: 1, Finished: true}}, jobsOf(t, pool, task)); diff != "" {
			t.Errorf("job (-want +got):\n%s", diff)
		}
	})
	// A handler still running when Stop's context ends is cancelled; its
	// task goes back to the queue without counting an attempt.
	t.Run("CancelsAtDeadline", func(t *testing.T) {
		t.Parallel()
		pool := servicePool(t)
		started := make(chan struct{})
		handler := func(ctx context.Context, _ agent.Task) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		q := startQueue(t, pool, handler, testConfig(t))
		task := newTask()
		enqueue(t, pool, q, task, time.Time{})
		select {
		case <-started:
		case <-time.After(waitBound):
			t.Fatal("the handler was not called")
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := q.Stop(ctx); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if diff := cmp.Diff([]jobRow{{State: "available", Attempt: 0}}, jobsOf(t, pool, task)); diff != "" {
			t.Errorf("job (-want +got):\n%s", diff)
		}
	})
}

package riverq_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/agent"
)

// BenchmarkCommitToWork measures how long a task waits between the commit
// of the transaction that enqueued it and the start of its handler, one
// task at a time on one Queue: commit_p50_ms and commit_p99_ms from the
// call of Commit (its round trip included), after_commit_p50_ms from its
// return. Tasks go out at a steady pace of one per gap, so that each meets
// the queue idle, as a step's task usually does.
func BenchmarkCommitToWork(b *testing.B) {
	for _, gap := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run("gap="+gap.String(), func(b *testing.B) { benchCommitToWork(b, gap) })
	}
	b.Run("concurrent=8", benchCommitToWorkConcurrent)
}

// benchCommitToWorkConcurrent is the same with 8 goroutines enqueueing at
// once, each waiting for its own task: inserts close together are where a
// missed notification would show (River sends at most one per fetch
// cooldown), as commit_p99_ms.
func benchCommitToWorkConcurrent(b *testing.B) {
	const inserters = 8
	pool := servicePool(b)
	var waiting sync.Map // agent.Task → chan time.Time
	handler := func(_ context.Context, t agent.Task) error {
		if ch, ok := waiting.Load(t); ok {
			ch.(chan time.Time) <- time.Now()
		}
		return nil
	}
	q := startQueue(b, pool, handler, testConfig(b))
	ctx := b.Context()
	var mu sync.Mutex
	fromCall := make([]time.Duration, 0, b.N)
	var failed atomic.Value
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range inserters {
		wg.Go(func() {
			for i := w; i < b.N; i += inserters {
				task, started := newTask(), make(chan time.Time, 1)
				waiting.Store(task, started)
				tx, err := pool.Begin(ctx)
				if err != nil {
					failed.Store(err)
					return
				}
				if err := q.EnqueueTx(ctx, tx, task, time.Time{}); err != nil {
					failed.Store(err)
					return
				}
				called := time.Now()
				if err := tx.Commit(ctx); err != nil {
					failed.Store(err)
					return
				}
				select {
				case at := <-started:
					mu.Lock()
					fromCall = append(fromCall, at.Sub(called))
					mu.Unlock()
				case <-time.After(waitBound):
					failed.Store(errors.New("no delivery within the bound"))
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(percentileMS(fromCall, 50), "commit_p50_ms")
	b.ReportMetric(percentileMS(fromCall, 99), "commit_p99_ms")
}

func benchCommitToWork(b *testing.B, gap time.Duration) {
	pool := servicePool(b)
	started := make(chan time.Time, 1)
	handler := func(context.Context, agent.Task) error {
		started <- time.Now()
		return nil
	}
	q := startQueue(b, pool, handler, testConfig(b))
	ctx := b.Context()
	// One task first, so the queue is listening and warm.
	enqueue(b, pool, q, newTask(), time.Time{})
	<-started

	fromCall := make([]time.Duration, 0, b.N)
	fromReturn := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		time.Sleep(gap)
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.EnqueueTx(ctx, tx, newTask(), time.Time{}); err != nil {
			b.Fatal(err)
		}
		called := time.Now()
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		select {
		case at := <-started:
			fromCall = append(fromCall, at.Sub(called))
			fromReturn = append(fromReturn, at.Sub(returned))
		case <-time.After(waitBound):
			b.Fatalf("no delivery within %s", waitBound)
		}
	}
	b.StopTimer()
	b.ReportMetric(percentileMS(fromCall, 50), "commit_p50_ms")
	b.ReportMetric(percentileMS(fromCall, 99), "commit_p99_ms")
	b.ReportMetric(percentileMS(fromReturn, 50), "after_commit_p50_ms")
}

// percentileMS returns the p-th percentile of ds in milliseconds.
func percentileMS(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, len(s)*p/100)
	return float64(s[i]) / float64(time.Millisecond)
}

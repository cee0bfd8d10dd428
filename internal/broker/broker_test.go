package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// waitTimeout bounds every wait for an event or a closed channel, so a
// broken broker fails the test instead of hanging it.
const waitTimeout = 10 * time.Second

// longRetention keeps logs for the whole test where expiry is not tested.
const longRetention = time.Minute

// implementation opens two brokers that share their logs and stops, as two
// instances of the service would. For Memory both are the same broker.
type implementation struct {
	name string
	open func(t *testing.T, retention time.Duration, opts ...broker.Option) (a, b broker.Broker)
}

var implementations = []implementation{
	{
		name: "Memory",
		open: func(t *testing.T, retention time.Duration, opts ...broker.Option) (broker.Broker, broker.Broker) {
			m := broker.NewMemory(retention, opts...)
			return m, m
		},
	},
	{
		name: "Redis",
		open: func(t *testing.T, retention time.Duration, opts ...broker.Option) (broker.Broker, broker.Broker) {
			url := redistest.URL(t)
			prefix := redistest.Prefix(t)
			a := broker.NewRedis(newClient(t, url), prefix, retention, opts...)
			b := broker.NewRedis(newClient(t, url), prefix, retention, opts...)
			return a, b
		},
	},
}

// TestBroker holds the behaviour every Broker shares. Cases append on a and
// follow on b where they can, so for Redis they also cross instances.
func TestBroker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retention time.Duration // longRetention if zero
		opts      []broker.Option
		run       func(t *testing.T, a, b broker.Broker)
	}{
		{name: "FollowFromStart", run: testFollowFromStart},
		{name: "AppendBatch", run: testAppendBatch},
		{name: "FollowAfterSeq", run: testFollowAfterSeq},
		{name: "FollowLive", run: testFollowLive},
		{name: "FinishClosesFollowers", run: testFinishClosesFollowers},
		{name: "FinishWithoutEvents", run: testFinishWithoutEvents},
		{name: "ManyFollowers", run: testManyFollowers},
		{name: "CancelEndsFollow", run: testCancelEndsFollow},
		{name: "ErrNotFound", run: testErrNotFound},
		{name: "ErrNotFoundAfterRetention", retention: 200 * time.Millisecond, run: testErrNotFoundAfterRetention},
		{
			name:      "ErrNotFoundWhenUnfinishedLogExpires",
			retention: 100 * time.Millisecond,
			opts:      []broker.Option{broker.WithMaxGeneration(100 * time.Millisecond), broker.WithBlock(50 * time.Millisecond)},
			run:       testUnfinishedLogExpires,
		},
		{name: "ErrSequence", run: testErrSequence},
		{name: "StopReachesOtherInstance", run: testStopReachesOtherInstance},
	}
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					retention := tt.retention
					if retention == 0 {
						retention = longRetention
					}
					a, b := impl.open(t, retention, tt.opts...)
					tt.run(t, a, b)
				})
			}
		})
	}
}

// testAppendBatch: several events in one Append arrive in order.
func testAppendBatch(t *testing.T, a, b broker.Broker) {
	id := uuid.New()
	if err := a.Append(context.Background(), id, makeEvents(1, 4)...); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, a, id, 5, 6)
	finish(t, a, id)
	got, err := followAll(t, b, id, 0)
	if err != nil {
		t.Errorf("Follow ended with %v", err)
	}
	if diff := cmp.Diff(makeEvents(1, 6), got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func testFollowFromStart(t *testing.T, a, b broker.Broker) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 5)
	finish(t, a, id)

	got, err := followAll(t, b, id, 0)
	if err != nil {
		t.Errorf("Follow ended with %v, want nil after Finish", err)
	}
	if diff := cmp.Diff(makeEvents(1, 5), got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func testFollowAfterSeq(t *testing.T, a, b broker.Broker) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 5)
	finish(t, a, id)

	tests := []struct {
		name     string
		afterSeq int64
		want     []broker.Event
	}{
		{name: "Negative", afterSeq: -1, want: makeEvents(1, 5)},
		{name: "Middle", afterSeq: 3, want: makeEvents(4, 5)},
		{name: "Last", afterSeq: 5, want: nil},
		{name: "BeyondLast", afterSeq: 9, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := followAll(t, b, id, tt.afterSeq)
			if err != nil {
				t.Errorf("Follow ended with %v, want nil", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events after %d (-want +got):\n%s", tt.afterSeq, diff)
			}
		})
	}
}

func testFollowLive(t *testing.T, a, b broker.Broker) {
	ctx := testContext(t)
	id := uuid.New()
	appendEvents(t, a, id, 1, 1)
	events, result, err := b.Follow(ctx, id, 1)
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	// Each event is appended only after the previous one arrived, so none
	// of them can have come from the replay.
	for seq := int64(2); seq <= 5; seq++ {
		appendEvents(t, a, id, seq, seq)
		if diff := cmp.Diff(makeEvents(seq, seq)[0], receive(t, events)); diff != "" {
			t.Fatalf("live event (-want +got):\n%s", diff)
		}
	}
	finish(t, a, id)
	waitClosed(t, events)
	if err := result(); err != nil {
		t.Errorf("Follow ended with %v, want nil after Finish", err)
	}
}

func testFinishClosesFollowers(t *testing.T, a, b broker.Broker) {
	ctx := testContext(t)
	id := uuid.New()
	appendEvents(t, a, id, 1, 3)
	type follower struct {
		events <-chan broker.Event
		result func() error
	}
	var followers []follower
	for range 3 {
		events, result, err := b.Follow(ctx, id, 0)
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
		for range 3 {
			receive(t, events)
		}
		followers = append(followers, follower{events, result})
	}
	// The followers now wait for more; Finish must wake them.
	finish(t, a, id)
	for i, f := range followers {
		waitClosed(t, f.events)
		if err := f.result(); err != nil {
			t.Errorf("follower %d ended with %v, want nil after Finish", i, err)
		}
	}
}

func testFinishWithoutEvents(t *testing.T, a, b broker.Broker) {
	id := uuid.New()
	finish(t, a, id)
	got, err := followAll(t, b, id, 0)
	if err != nil || len(got) != 0 {
		t.Errorf("Follow of a log finished without events = %v, %v; want no events, nil", got, err)
	}
}

func testManyFollowers(t *testing.T, a, b broker.Broker) {
	const followers, last = 20, 50
	id := uuid.New()
	appendEvents(t, a, id, 1, 1)

	var wg sync.WaitGroup
	got := make([][]broker.Event, followers)
	errs := make([]error, followers)
	for i := range followers {
		// Half follow on the instance that appends, half on the other.
		follower := []broker.Broker{a, b}[i%2]
		events, result, err := follower.Follow(testContext(t), id, 0)
		if err != nil {
			t.Fatalf("Follow %d: %v", i, err)
		}
		wg.Go(func() {
			for ev := range events {
				got[i] = append(got[i], ev)
			}
			errs[i] = result()
		})
	}
	appendEvents(t, a, id, 2, last)
	finish(t, a, id)
	wg.Wait()

	want := makeEvents(1, last)
	for i := range followers {
		if errs[i] != nil {
			t.Errorf("follower %d ended with %v, want nil", i, errs[i])
		}
		if diff := cmp.Diff(want, got[i]); diff != "" {
			t.Errorf("follower %d events (-want +got):\n%s", i, diff)
		}
	}
}

func testCancelEndsFollow(t *testing.T, a, b broker.Broker) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 1)
	ctx, cancel := context.WithCancel(testContext(t))
	events, result, err := b.Follow(ctx, id, 0)
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	receive(t, events)
	cancel()
	// Well within the default Redis block time: the channel must not wait
	// for a blocked read to return.
	start := time.Now()
	waitClosed(t, events)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("channel closed %v after cancel, want at once", elapsed)
	}
	if err := result(); !errors.Is(err, context.Canceled) {
		t.Errorf("Follow ended with %v, want context.Canceled", err)
	}
}

func testErrNotFound(t *testing.T, a, b broker.Broker) {
	_, _, err := b.Follow(testContext(t), uuid.New(), 0)
	if !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow of an unknown log = %v, want ErrNotFound", err)
	}
}

// testErrNotFoundAfterRetention expects a retention of 200ms.
func testErrNotFoundAfterRetention(t *testing.T, a, b broker.Broker) {
	const retention = 200 * time.Millisecond
	id := uuid.New()
	appendEvents(t, a, id, 1, 2)
	finishedAt := time.Now()
	finish(t, a, id)
	deadline := time.Now().Add(waitTimeout)
	for {
		_, _, err := b.Follow(testContext(t), id, 0)
		if errors.Is(err, broker.ErrNotFound) {
			if elapsed := time.Since(finishedAt); elapsed < retention {
				t.Errorf("log gone %v after Finish, want it kept for %v", elapsed, retention)
			}
			return
		}
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("log still there %v after Finish with retention %v", time.Since(finishedAt), retention)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testUnfinishedLogExpires plays an instance that crashed mid-generation:
// its log expires and the follower learns that it will never end.
func testUnfinishedLogExpires(t *testing.T, a, b broker.Broker) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 1)
	events, result, err := b.Follow(testContext(t), id, 0)
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	receive(t, events)
	waitClosed(t, events)
	if err := result(); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow of an expired unfinished log ended with %v, want ErrNotFound", err)
	}
}

func testErrSequence(t *testing.T, a, b broker.Broker) {
	ctx := testContext(t)
	id := uuid.New()
	appendEvents(t, a, id, 1, 2)
	for _, seq := range []int64{2, 1, 0, -1} {
		if err := a.Append(ctx, id, broker.Event{Seq: seq}); !errors.Is(err, broker.ErrSequence) {
			t.Errorf("Append %d after 2 = %v, want ErrSequence", seq, err)
		}
	}
	appendEvents(t, a, id, 3, 3) // the refusals left the log usable
	finish(t, a, id)
	if err := b.Append(ctx, id, broker.Event{Seq: 4}); !errors.Is(err, broker.ErrSequence) {
		t.Errorf("Append after Finish = %v, want ErrSequence", err)
	}
	got, err := followAll(t, b, id, 0)
	if err != nil {
		t.Errorf("Follow ended with %v, want nil", err)
	}
	if diff := cmp.Diff(makeEvents(1, 3), got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func testStopReachesOtherInstance(t *testing.T, a, b broker.Broker) {
	ctx, cancel := context.WithCancel(testContext(t))
	stops, err := b.Stops(ctx)
	if err != nil {
		t.Fatalf("Stops: %v", err)
	}
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	for _, id := range ids {
		if err := a.Stop(ctx, id); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	for _, want := range ids {
		select {
		case got := <-stops:
			if got != want {
				t.Errorf("stop for %v, want %v", got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no stop for %v within %v", want, waitTimeout)
		}
	}
	cancel()
	select {
	case _, ok := <-stops:
		if ok {
			t.Error("stop delivered after ctx ended")
		}
	case <-time.After(waitTimeout):
		t.Fatal("Stops channel still open after ctx ended")
	}
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func payload(seq int64) []byte { return fmt.Appendf(nil, "token %d", seq) }

func makeEvents(from, to int64) []broker.Event {
	var events []broker.Event
	for seq := from; seq <= to; seq++ {
		events = append(events, broker.Event{Seq: seq, Data: payload(seq)})
	}
	return events
}

func appendEvents(tb testing.TB, b broker.Broker, id uuid.UUID, from, to int64) {
	tb.Helper()
	for _, ev := range makeEvents(from, to) {
		if err := b.Append(testContext(tb), id, ev); err != nil {
			tb.Fatalf("Append %d: %v", ev.Seq, err)
		}
	}
}

func finish(tb testing.TB, b broker.Broker, id uuid.UUID) {
	tb.Helper()
	if err := b.Finish(testContext(tb), id); err != nil {
		tb.Fatalf("Finish: %v", err)
	}
}

// followAll follows a finished log to its end.
func followAll(tb testing.TB, b broker.Broker, id uuid.UUID, afterSeq int64) ([]broker.Event, error) {
	tb.Helper()
	events, result, err := b.Follow(testContext(tb), id, afterSeq)
	if err != nil {
		tb.Fatalf("Follow: %v", err)
	}
	var got []broker.Event
	timeout := time.After(waitTimeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return got, result()
			}
			got = append(got, ev)
		case <-timeout:
			tb.Fatalf("Follow still open after %v, with %d events", waitTimeout, len(got))
		}
	}
}

func receive(tb testing.TB, events <-chan broker.Event) broker.Event {
	tb.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			tb.Fatal("Follow ended early")
		}
		return ev
	case <-time.After(waitTimeout):
		tb.Fatalf("no event within %v", waitTimeout)
	}
	panic("unreachable")
}

func waitClosed(tb testing.TB, events <-chan broker.Event) {
	tb.Helper()
	select {
	case ev, ok := <-events:
		if ok {
			tb.Fatalf("got event %d, want the channel closed", ev.Seq)
		}
	case <-time.After(waitTimeout):
		tb.Fatalf("channel still open after %v", waitTimeout)
	}
}

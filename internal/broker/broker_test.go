package broker_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/clock"
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
	open func(t *testing.T, retention time.Duration, opts ...broker.Option) (a, b broker.Broker, x expiry)
}

// expiry plays the passing of time on the logs of the brokers open
// returned, so that tests of the expiry rules need not wait them out.
type expiry struct {
	// age makes the log of id d older, as if d had passed since the test
	// last wrote to it.
	age func(t *testing.T, id uuid.UUID, d time.Duration)
	// expire checks that the log of id, which the test has just written
	// to, is set to expire ttl from now and not before, and makes it
	// expire as if ttl had passed.
	expire func(t *testing.T, id uuid.UUID, ttl time.Duration)
}

// ttlSlack is how far a Redis log's PTTL may have counted down between
// the write that set it and the test reading it.
const ttlSlack = 5 * time.Second

var implementations = []implementation{
	{
		// Memory expires logs by its clock: a fake one, which the test
		// steps to the edge of a ttl and then over it.
		name: "Memory",
		open: func(t *testing.T, retention time.Duration, opts ...broker.Option) (broker.Broker, broker.Broker, expiry) {
			fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			m := broker.NewMemory(retention, slices.Concat(opts, []broker.Option{broker.WithClock(fake)})...)
			x := expiry{
				age: func(t *testing.T, id uuid.UUID, d time.Duration) { fake.Advance(d) },
				expire: func(t *testing.T, id uuid.UUID, ttl time.Duration) {
					t.Helper()
					fake.Advance(ttl - time.Nanosecond)
					if !exists(t, m, id) {
						t.Fatalf("log gone %v after the last write, want it kept for %v", ttl-time.Nanosecond, ttl)
					}
					fake.Advance(time.Nanosecond)
				},
			}
			return m, m, x
		},
	},
	{
		// Redis expires logs by PEXPIRE on the server's clock, which no
		// test can move: the hooks read and rewrite the key's PTTL, and
		// delete the key as its expiry would.
		name: "Redis",
		open: func(t *testing.T, retention time.Duration, opts ...broker.Option) (broker.Broker, broker.Broker, expiry) {
			url := redistest.URL(t)
			prefix := redistest.Prefix(t)
			a := newRedis(t, newClient(t, url), prefix, retention, opts...)
			b := newRedis(t, newClient(t, url), prefix, retention, opts...)
			admin := newClient(t, url)
			pttl := func(t *testing.T, key string) time.Duration {
				t.Helper()
				ttl, err := admin.PTTL(testContext(t), key).Result()
				if err != nil {
					t.Fatalf("PTTL %s: %v", key, err)
				}
				if ttl < 0 {
					// -2: no such key; -1: a key that never expires.
					t.Fatalf("PTTL %s = %d, want a log that expires", key, ttl)
				}
				return ttl
			}
			x := expiry{
				age: func(t *testing.T, id uuid.UUID, d time.Duration) {
					t.Helper()
					key := broker.LogKey(a, id)
					left := pttl(t, key)
					if left <= d {
						t.Fatalf("log expires in %v, want it to outlive %v", left, d)
					}
					if err := admin.PExpire(testContext(t), key, left-d).Err(); err != nil {
						t.Fatalf("PEXPIRE %s: %v", key, err)
					}
				},
				expire: func(t *testing.T, id uuid.UUID, ttl time.Duration) {
					t.Helper()
					key := broker.LogKey(a, id)
					if left := pttl(t, key); left > ttl || left <= ttl-ttlSlack {
						t.Errorf("log expires in %v, want %v (less the time since the write)", left, ttl)
					}
					if err := admin.Del(testContext(t), key).Err(); err != nil {
						t.Fatalf("DEL %s: %v", key, err)
					}
				},
			}
			return a, b, x
		},
	},
}

// TestBroker holds the behaviour every Broker shares. Cases append on a and
// follow on b where they can, so for Redis they also cross instances.
func TestBroker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, a, b broker.Broker)
	}{
		{name: "FollowFromStart", run: testFollowFromStart},
		{name: "AppendBatch", run: testAppendBatch},
		{name: "WriteMany", run: testWriteMany},
		{name: "FollowAfterSeq", run: testFollowAfterSeq},
		{name: "FollowLive", run: testFollowLive},
		{name: "FinishClosesFollowers", run: testFinishClosesFollowers},
		{name: "FinishWithoutEvents", run: testFinishWithoutEvents},
		{name: "ManyFollowers", run: testManyFollowers},
		{name: "CancelEndsFollow", run: testCancelEndsFollow},
		{name: "ErrNotFound", run: testErrNotFound},
		{name: "ErrSequence", run: testErrSequence},
		{name: "StopReachesOtherInstance", run: testStopReachesOtherInstance},
	}
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					a, b, _ := impl.open(t, longRetention)
					tt.run(t, a, b)
				})
			}
		})
	}
}

// The retention and longest generation of TestBrokerExpiry: far enough
// apart that one is not mistaken for the other, even give or take
// ttlSlack.
const (
	expiryRetention     = time.Minute
	expiryMaxGeneration = 10 * time.Minute
)

// TestBrokerExpiry holds the expiry rules every Broker shares: a finished
// log lives for the retention, an unfinished one for the longest
// generation plus the retention after its last append.
func TestBrokerExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, a, b broker.Broker, x expiry)
	}{
		{name: "ErrNotFoundAfterRetention", run: testErrNotFoundAfterRetention},
		{name: "ErrNotFoundWhenUnfinishedLogExpires", run: testUnfinishedLogExpires},
		{name: "AppendPushesBackExpiry", run: testAppendPushesBackExpiry},
	}
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					a, b, x := impl.open(t, expiryRetention,
						broker.WithMaxGeneration(expiryMaxGeneration),
						// A Redis follower notices a deleted log after
						// one read's block time.
						broker.WithBlock(50*time.Millisecond))
					tt.run(t, a, b, x)
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

// testWriteMany: one Write appends to and finishes several logs, each in
// order, and a write refused for one log leaves the others made.
func testWriteMany(t *testing.T, a, b broker.Broker) {
	done, open, refused := uuid.New(), uuid.New(), uuid.New()
	appendEvents(t, a, refused, 1, 3)
	errs := a.Write(testContext(t), []broker.Write{
		{GenerationID: done, Events: makeEvents(1, 3), Finish: true},
		{GenerationID: refused, Events: makeEvents(2, 4)}, // 2 is not above 3
		{GenerationID: open, Events: makeEvents(1, 2)},
		{GenerationID: uuid.New()}, // nothing to write
	})
	if len(errs) != 4 || errs[0] != nil || !errors.Is(errs[1], broker.ErrSequence) || errs[2] != nil || errs[3] != nil {
		t.Fatalf("Write = %v, want nil, ErrSequence, nil, nil", errs)
	}
	got, err := followAll(t, b, done, 0)
	if err != nil {
		t.Errorf("Follow of the finished log ended with %v", err)
	}
	if diff := cmp.Diff(makeEvents(1, 3), got); diff != "" {
		t.Errorf("finished log (-want +got):\n%s", diff)
	}
	// The open log takes the next write, which finishes it.
	if errs := a.Write(testContext(t), []broker.Write{{GenerationID: open, Events: makeEvents(3, 3), Finish: true}}); errs[0] != nil {
		t.Fatalf("second Write: %v", errs[0])
	}
	got, err = followAll(t, b, open, 1)
	if err != nil {
		t.Errorf("Follow of the second log ended with %v", err)
	}
	if diff := cmp.Diff(makeEvents(2, 3), got); diff != "" {
		t.Errorf("second log after 1 (-want +got):\n%s", diff)
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

// testErrNotFoundAfterRetention: Finish cuts the log's life from the
// longest generation plus the retention down to the retention.
func testErrNotFoundAfterRetention(t *testing.T, a, b broker.Broker, x expiry) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 2)
	finish(t, a, id)
	x.expire(t, id, expiryRetention)
	if _, _, err := b.Follow(testContext(t), id, 0); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow after the retention = %v, want ErrNotFound", err)
	}
}

// testUnfinishedLogExpires plays an instance that crashed mid-generation:
// its log expires and the follower learns that it will never end.
func testUnfinishedLogExpires(t *testing.T, a, b broker.Broker, x expiry) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 1)
	events, result, err := b.Follow(testContext(t), id, 0)
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	receive(t, events)
	x.expire(t, id, expiryMaxGeneration+expiryRetention)
	waitClosed(t, events)
	if err := result(); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow of an expired unfinished log ended with %v, want ErrNotFound", err)
	}
	if _, _, err := b.Follow(testContext(t), id, 0); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow of an expired unfinished log = %v, want ErrNotFound", err)
	}
}

// testAppendPushesBackExpiry: a generation may run longer than the longest
// generation in all, as long as it keeps appending; its log lives on from
// its last append.
func testAppendPushesBackExpiry(t *testing.T, a, b broker.Broker, x expiry) {
	id := uuid.New()
	appendEvents(t, a, id, 1, 1)
	x.age(t, id, expiryMaxGeneration)
	appendEvents(t, a, id, 2, 2)
	x.expire(t, id, expiryMaxGeneration+expiryRetention)
	if _, _, err := b.Follow(testContext(t), id, 0); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow after the log expired = %v, want ErrNotFound", err)
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

// exists reports whether b has the log of id, by following it past its
// end and leaving at once.
func exists(tb testing.TB, b broker.Broker, id uuid.UUID) bool {
	tb.Helper()
	ctx, cancel := context.WithCancel(testContext(tb))
	defer cancel()
	_, _, err := b.Follow(ctx, id, math.MaxInt64)
	if errors.Is(err, broker.ErrNotFound) {
		return false
	}
	if err != nil {
		tb.Fatalf("Follow: %v", err)
	}
	return true
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

package broker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
)

func newClient(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	client, err := redisconn.NewClient(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Close() })
	return client
}

// TestRedisResumeOnAnotherInstance plays a client that loses its stream on
// one instance and resumes it on another while the generation goes on.
func TestRedisResumeOnAnotherInstance(t *testing.T) {
	t.Parallel()
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	runner := newRedis(t, newClient(t, url), prefix, longRetention)
	other := newRedis(t, newClient(t, url), prefix, longRetention)
	id := uuid.New()
	appendEvents(t, runner, id, 1, 3)

	ctx, disconnect := context.WithCancel(testContext(t))
	events, _, err := runner.Follow(ctx, id, 0)
	if err != nil {
		t.Fatalf("Follow on the runner: %v", err)
	}
	receive(t, events)
	last := receive(t, events)
	disconnect()

	resumed, result, err := other.Follow(testContext(t), id, last.Seq)
	if err != nil {
		t.Fatalf("Follow on the other instance: %v", err)
	}
	appendEvents(t, runner, id, 4, 5)
	finish(t, runner, id)
	var got []broker.Event
	for ev := range resumed {
		got = append(got, ev)
	}
	if err := result(); err != nil {
		t.Errorf("resumed Follow ended with %v, want nil", err)
	}
	if diff := cmp.Diff(makeEvents(3, 5), got); diff != "" {
		t.Errorf("resumed events (-want +got):\n%s", diff)
	}
}

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestRedisRoundTrips guards the hot path: one round trip per token.
func TestRedisRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	client := newClient(t, redistest.URL(t))
	// Connect outside the count: a new connection says HELLO first, and
	// pipelines have a pool of their own.
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Pipelined(ctx, func(pipe redis.Pipeliner) error { return pipe.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	b := newRedis(t, client, redistest.Prefix(t), longRetention)
	// The first Follow also subscribes the broker to append notifications,
	// once per process: not part of any follow's cost.
	if _, _, err := b.Follow(ctx, uuid.New(), 0); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("warm-up follow: %v", err)
	}
	counter := new(roundTrips)
	client.AddHook(counter)
	id := uuid.New()

	tests := []struct {
		name string
		do   func(t *testing.T)
	}{
		{name: "AppendFirst", do: func(t *testing.T) { appendEvents(t, b, id, 1, 1) }},
		{name: "AppendNext", do: func(t *testing.T) { appendEvents(t, b, id, 2, 2) }},
		{name: "Finish", do: func(t *testing.T) { finish(t, b, id) }},
		{name: "FollowFinished", do: func(t *testing.T) { followAll(t, b, id, 0) }},
		{name: "Stop", do: func(t *testing.T) {
			if err := b.Stop(ctx, id); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counter.n.Load()
			tt.do(t)
			if n := counter.n.Load() - before; n != 1 {
				t.Errorf("%s took %d round trips, want 1", tt.name, n)
			}
		})
	}
}

// TestRedisOutage takes Redis away under a follower and a stop
// subscription, and checks that both recover once it is back, as far as a
// Redis without persistence allows.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	server := redistest.Start(t)
	client := newClient(t, server.URL)
	// A follower notices the outage at its next read: poll often.
	b := newRedis(t, client, "outage:", longRetention, broker.WithBlock(100*time.Millisecond))
	ctx := testContext(t)
	stops, err := b.Stops(ctx)
	if err != nil {
		t.Fatalf("Stops: %v", err)
	}
	id := uuid.New()
	appendEvents(t, b, id, 1, 1)
	events, result, err := b.Follow(ctx, id, 0)
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	receive(t, events)

	server.Stop()
	waitClosed(t, events)
	if err := result(); err == nil || errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow ended with %v during the outage, want a Redis error", err)
	}
	// go-redis retries and redials for seconds; the caller's deadline
	// bounds that.
	appendCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Append(appendCtx, id, broker.Event{Seq: 2}); err == nil {
		t.Error("Append succeeded during the outage")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Append during the outage took %v despite a 500ms deadline", elapsed)
	}

	server.Restart()
	// The restarted Redis is empty: the old log is gone for good.
	if _, _, err := b.Follow(ctx, id, 0); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Follow after restart = %v, want ErrNotFound", err)
	}
	appendEvents(t, b, uuid.New(), 1, 1)

	// The subscription comes back by itself, some time after Redis does;
	// stops sent before that are lost, so keep asking.
	stopped := uuid.New()
	deadline := time.Now().Add(waitTimeout)
	for {
		if err := b.Stop(ctx, stopped); err != nil {
			t.Fatalf("Stop after restart: %v", err)
		}
		select {
		case got := <-stops:
			if got != stopped {
				t.Fatalf("stop for %v, want %v", got, stopped)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stop delivered within %v of the restart", waitTimeout)
		}
	}
}

// newRedis is broker.NewRedis closed when the test ends.
func newRedis(tb testing.TB, client *redis.Client, prefix string, retention time.Duration, opts ...broker.Option) *broker.Redis {
	tb.Helper()
	b := broker.NewRedis(client, prefix, retention, opts...)
	tb.Cleanup(func() { b.Close() })
	return b
}

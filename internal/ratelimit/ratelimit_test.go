package ratelimit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) {
	teardown := redistest.Setup()
	code := m.Run()
	teardown()
	os.Exit(code)
}

func newRedis(t *testing.T, url string) *Redis {
	t.Helper()
	client, err := redisconn.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return NewRedis(client, redistest.Prefix(t))
}

// TestLimiters runs one table against both implementations: they must agree.
func TestLimiters(t *testing.T) {
	t.Parallel()
	impls := map[string]func(t *testing.T) Limiter{
		"Memory": func(*testing.T) Limiter { return NewMemory() },
		"Redis":  func(t *testing.T) Limiter { return newRedis(t, redistest.URL(t)) },
	}
	for name, newLimiter := range impls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			t.Run("BurstThenDeny", func(t *testing.T) {
				l := newLimiter(t)
				limit := PerMinute(3)
				for i := range 3 {
					res, err := l.Allow(ctx, "k", limit)
					if err != nil || !res.Allowed || res.Remaining != 2-i {
						t.Fatalf("call %d: %+v %v, want allowed with %d remaining", i, res, err, 2-i)
					}
				}
				res, err := l.Allow(ctx, "k", limit)
				if err != nil || res.Allowed || res.Remaining != 0 {
					t.Fatalf("4th call: %+v %v, want denied", res, err)
				}
				if res.RetryAfter < 19*time.Second || res.RetryAfter > 20*time.Second {
					t.Errorf("RetryAfter = %v, want about 20s (one emission interval)", res.RetryAfter)
				}
				if res.ResetAfter < 59*time.Second || res.ResetAfter > time.Minute {
					t.Errorf("ResetAfter = %v, want about 1m", res.ResetAfter)
				}
			})
			t.Run("KeysAreIndependent", func(t *testing.T) {
				l := newLimiter(t)
				limit := PerMinute(1)
				if res, _ := l.Allow(ctx, "a", limit); !res.Allowed {
					t.Fatal("a denied")
				}
				if res, _ := l.Allow(ctx, "b", limit); !res.Allowed {
					t.Error("b denied because of a")
				}
			})
			t.Run("RecoversAfterInterval", func(t *testing.T) {
				l := newLimiter(t)
				limit := Limit{Rate: 20, Burst: 1, Period: time.Second} // one every 50ms
				if res, _ := l.Allow(ctx, "r", limit); !res.Allowed {
					t.Fatal("first denied")
				}
				if res, _ := l.Allow(ctx, "r", limit); res.Allowed {
					t.Fatal("second allowed at once")
				}
				time.Sleep(60 * time.Millisecond)
				if res, _ := l.Allow(ctx, "r", limit); !res.Allowed {
					t.Error("not allowed again after the emission interval")
				}
			})
		})
	}
}

// TestResilientOutage stops and restarts Redis: the fail-open class keeps
// passing, the others are limited per instance, and the shared count is
// back once Redis is.
func TestResilientOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := NewResilient(newRedis(t, srv.URL), log)
	a.Cooldown = 10 * time.Millisecond
	b := NewResilient(a.shared, log) // a second instance on the same Redis
	b.Cooldown = 10 * time.Millisecond
	ctx := context.Background()
	limit := PerMinute(2)

	if _, degraded := a.Allow(ctx, "shared", limit, false); degraded {
		t.Fatal("degraded with Redis up")
	}
	if res, _ := b.Allow(ctx, "shared", limit, false); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("b does not share a's count: %+v", res)
	}

	srv.Stop()
	for i := range 5 {
		res, degraded := a.Allow(ctx, "open", limit, true)
		if !res.Allowed || !degraded {
			t.Fatalf("fail-open call %d during the outage: %+v degraded=%v", i, res, degraded)
		}
	}
	var allowed int
	for range 4 {
		if res, degraded := a.Allow(ctx, "closed", limit, false); res.Allowed {
			allowed++
		} else if !degraded {
			t.Error("a denial during the outage is not marked degraded")
		}
	}
	if allowed != 2 {
		t.Errorf("%d of 4 allowed by the in-memory fallback, want 2", allowed)
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, degraded := a.Allow(ctx, "back", limit, false)
		if !degraded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still degraded 10s after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res, degraded := b.Allow(ctx, "back", limit, false); degraded || !res.Allowed || res.Remaining != 0 {
		t.Errorf("after recovery b does not share a's count: %+v degraded=%v", res, degraded)
	}
}

// countHook counts commands sent to Redis.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// TestRedisOneRoundTrip: a check is one round trip once the script is loaded.
func TestRedisOneRoundTrip(t *testing.T) {
	t.Parallel()
	client, err := redisconn.NewClient(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	var n atomic.Int64
	client.AddHook(countHook{&n})
	l := NewRedis(client, redistest.Prefix(t))
	ctx := context.Background()
	if _, err := l.Allow(ctx, "warm", PerMinute(100)); err != nil { // loads the script
		t.Fatal(err)
	}
	n.Store(0)
	for i := range 10 {
		if _, err := l.Allow(ctx, "k"+strconv.Itoa(i%3), PerMinute(100)); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Load(); got != 10 {
		t.Errorf("10 checks took %d round trips, want 10", got)
	}
}

// TestResilientSlowRedis: a Redis that accepts connections but never
// answers costs a check about the timeout, not go-redis's default seconds.
func TestResilientSlowRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() }) // hold it open, say nothing
		}
	}()
	client, err := redisconn.NewFastClient("redis://"+ln.Addr().String(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := NewResilient(NewRedis(client, "slow:"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := time.Now()
	res, degraded := r.Allow(context.Background(), "k", PerMinute(1), false)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a check against a silent Redis took %v", d)
	}
	if !degraded || !res.Allowed {
		t.Errorf("want an in-memory answer, got %+v degraded=%v", res, degraded)
	}
	// A caller that gives up does not put the limiter in cool-down.
	healthy := NewResilient(newRedis(t, redistest.URL(t)), slog.New(slog.NewTextHandler(io.Discard, nil)))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	healthy.Allow(canceled, "c", PerMinute(5), false)
	if _, degraded := healthy.Allow(context.Background(), "c2", PerMinute(5), false); degraded {
		t.Error("one canceled call made the limiter skip Redis")
	}
}

// TestMemoryPeek: a peek tells whether an event would pass, without
// counting one.
func TestMemoryPeek(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	limit := PerMinute(2)
	for range 5 {
		if res := m.Peek("k", limit); !res.Allowed || res.Remaining != 2 {
			t.Fatalf("peek on a fresh key: %+v", res)
		}
	}
	m.Allow(context.Background(), "k", limit)
	if res := m.Peek("k", limit); !res.Allowed || res.Remaining != 1 {
		t.Errorf("after one event: %+v", res)
	}
	m.Allow(context.Background(), "k", limit)
	if res := m.Peek("k", limit); res.Allowed || res.RetryAfter <= 0 {
		t.Errorf("after the burst: %+v, want denied with a retry hint", res)
	}
}

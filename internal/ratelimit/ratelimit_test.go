package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"github.com/parleyhq/parley/internal/leaktest"
	"log/slog"
	"os"
	"strconv"
	"strings"
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
	os.Exit(leaktest.Check(code))
}

// discardLog swallows the limiter's warnings.
var discardLog = slog.New(slog.DiscardHandler)

func newRedis(t *testing.T, url string) *Redis {
	t.Helper()
	client, err := redisconn.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return NewRedis(client, redistest.Prefix(t))
}

// newPipelined returns a client of the test Redis and its auto-pipeliner.
func newPipelined(t *testing.T) (*redis.Client, *redis.AutoPipeliner) {
	t.Helper()
	client, err := redisconn.NewClient(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ap, err := redisconn.AutoPipeline(client)
	if err != nil {
		t.Fatal(err)
	}
	return client, ap
}

// TestLimiters runs one table against both implementations: they must agree.
// wait lets time pass for a limiter. Memory runs on a fake clock that wait
// advances. Redis computes with its own TIME, which no test can move, so
// there wait sleeps; it is only ever given a RetryAfter the limiter itself
// returned, under 50ms, and proves that waiting that long is enough.
func TestLimiters(t *testing.T) {
	t.Parallel()
	impls := map[string]func(t *testing.T) (l Limiter, wait func(time.Duration)){
		"Memory": func(*testing.T) (Limiter, func(time.Duration)) {
			m, fake := newFakeMemory()
			return m, fake.Advance
		},
		"Redis": func(t *testing.T) (Limiter, func(time.Duration)) {
			return newRedis(t, redistest.URL(t)), time.Sleep
		},
	}
	for name, newLimiter := range impls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			t.Run("BurstThenDeny", func(t *testing.T) {
				l, _ := newLimiter(t)
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
				l, _ := newLimiter(t)
				limit := PerMinute(1)
				if res, _ := l.Allow(ctx, "a", limit); !res.Allowed {
					t.Fatal("a denied")
				}
				if res, _ := l.Allow(ctx, "b", limit); !res.Allowed {
					t.Error("b denied because of a")
				}
			})
			t.Run("RecoversAfterRetryAfter", func(t *testing.T) {
				l, wait := newLimiter(t)
				const interval = 50 * time.Millisecond
				limit := Limit{Rate: 20, Burst: 1, Period: time.Second} // one every interval
				if res, err := l.Allow(ctx, "r", limit); err != nil || !res.Allowed {
					t.Fatalf("first call: %+v %v, want allowed", res, err)
				}
				res, err := l.Allow(ctx, "r", limit)
				if err != nil || res.Allowed {
					t.Fatalf("second call at once: %+v %v, want denied", res, err)
				}
				if res.RetryAfter <= 0 || res.RetryAfter > interval {
					t.Fatalf("RetryAfter = %v, want in (0, %v]", res.RetryAfter, interval)
				}
				wait(res.RetryAfter)
				if res, err := l.Allow(ctx, "r", limit); err != nil || !res.Allowed {
					t.Errorf("call after RetryAfter: %+v %v, want allowed", res, err)
				}
			})
		})
	}
}

// TestResilientCooldown: after a failed shared check the shared limiter is
// skipped for Cooldown, by the limiter's clock, and tried again after it.
func TestResilientCooldown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop() // every shared check fails
	const cooldown = time.Second
	tests := []struct {
		name      string
		elapsed   time.Duration // since the failed check
		wantTried bool
	}{
		{"SkippedJustBeforeTheEnd", cooldown - time.Nanosecond, false},
		{"SkippedAtTheEnd", cooldown, false},
		{"TriedAfterTheEnd", cooldown + time.Nanosecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, err := redisconn.NewClient(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			var tries atomic.Int64
			client.AddHook(countHook{&tries})
			fake := newFakeClock()
			r := NewResilient(NewRedis(client, redistest.Prefix(t)), discardLog, WithClock(fake))
			r.Cooldown = cooldown
			ctx := context.Background()
			if _, degraded := r.Allow(ctx, "k", PerMinute(5), false); !degraded || tries.Load() != 1 {
				t.Fatalf("first check: degraded=%v after %d tries of Redis, want degraded after 1", degraded, tries.Load())
			}
			fake.Advance(tt.elapsed)
			if _, degraded := r.Allow(ctx, "k", PerMinute(5), false); !degraded {
				t.Error("a check with Redis down is not marked degraded")
			}
			if tried := tries.Load() == 2; tried != tt.wantTried {
				t.Errorf("%v after the failure, Redis tried again: %v; want %v", tt.elapsed, tried, tt.wantTried)
			}
		})
	}
}

// downLimiter is a shared limiter whose every check fails, as Redis's do
// during an outage.
type downLimiter struct{}

func (downLimiter) Allow(context.Context, string, Limit) (Result, error) {
	return Result{}, errors.New("connection refused")
}

// TestResilientWarnings: failures are logged at most once per 10 seconds,
// by the limiter's clock, however often the shared limiter is retried.
func TestResilientWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		elapsed      time.Duration // since the first warning
		wantWarnings int
	}{
		{"QuietJustBefore10s", 10*time.Second - time.Nanosecond, 1},
		{"AgainAt10s", 10 * time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			fake := newFakeClock()
			r := NewResilient(downLimiter{}, slog.New(slog.NewTextHandler(&logs, nil)), WithClock(fake))
			ctx := context.Background()
			r.Allow(ctx, "k", PerMinute(5), false)
			fake.Advance(tt.elapsed) // past the cool-down: the next check retries
			r.Allow(ctx, "k", PerMinute(5), false)
			if got := strings.Count(logs.String(), "shared rate limiter unavailable"); got != tt.wantWarnings {
				t.Errorf("%d warnings for failures %v apart, want %d:\n%s", got, tt.elapsed, tt.wantWarnings, logs.String())
			}
		})
	}
}

// TestResilientFallbackClock: the in-memory fallback counts by the same
// clock as the cool-down, so its window passes when that clock moves.
func TestResilientFallbackClock(t *testing.T) {
	t.Parallel()
	fake := newFakeClock()
	r := NewResilient(downLimiter{}, discardLog, WithClock(fake))
	ctx := context.Background()
	limit := PerMinute(1)
	if res, _ := r.Allow(ctx, "k", limit, false); !res.Allowed {
		t.Fatalf("first check: %+v, want allowed by the fallback", res)
	}
	if res, _ := r.Allow(ctx, "k", limit, false); res.Allowed {
		t.Fatalf("second check at once: %+v, want denied by the fallback", res)
	}
	fake.Advance(time.Minute)
	if res, degraded := r.Allow(ctx, "k", limit, false); !res.Allowed || !degraded {
		t.Errorf("check a minute later: %+v degraded=%v, want allowed by the fallback", res, degraded)
	}
}

// TestResilientOutage stops and restarts Redis: the fail-open class keeps
// passing, the others are limited per instance, and the shared count is
// back once Redis is.
func TestResilientOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	fake := newFakeClock()
	a := NewResilient(newRedis(t, srv.URL), discardLog, WithClock(fake))
	b := NewResilient(a.shared, discardLog, WithClock(fake)) // a second instance on the same Redis
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
	// Each poll steps the clock past the cool-down, so the check goes to
	// Redis; the poll (bounded, in real time) only waits for go-redis to
	// reconnect, which it does in its own time if dials failed for long.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fake.Advance(a.Cooldown + time.Nanosecond)
		_, degraded := a.Allow(ctx, "back", limit, false)
		if !degraded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still degraded, past the cool-down, 10s after Redis came back")
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
	client, err := redisconn.NewFastClient(redistest.SilentURL(t), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := NewResilient(NewRedis(client, "slow:"), discardLog)
	start := time.Now()
	res, degraded := r.Allow(context.Background(), "k", PerMinute(1), false)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a check against a silent Redis took %v", d)
	}
	if !degraded || !res.Allowed {
		t.Errorf("want an in-memory answer, got %+v degraded=%v", res, degraded)
	}
	// A caller that gives up does not put the limiter in cool-down.
	healthy := NewResilient(newRedis(t, redistest.URL(t)), discardLog)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	healthy.Allow(canceled, "c", PerMinute(5), false)
	if _, degraded := healthy.Allow(context.Background(), "c2", PerMinute(5), false); degraded {
		t.Error("one canceled call made the limiter skip Redis")
	}
}

// countingScripter counts the scripts sent through it.
type countingScripter struct {
	Scripter
	evals atomic.Int64
}

func (c *countingScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	c.evals.Add(1)
	return c.Scripter.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisPipelined: checks that overlap go through the pipeliner and are
// counted exactly as one at a time are: of 200 concurrent checks against a
// burst of 50, exactly 50 pass; and a check alone takes the plain client.
func TestRedisPipelined(t *testing.T) {
	t.Parallel()
	client, ap := newPipelined(t)
	direct, batched := &countingScripter{Scripter: client}, &countingScripter{Scripter: ap}
	l := NewRedis(direct, redistest.Prefix(t), Pipelined(batched))
	ctx := context.Background()
	limit := PerMinute(50)

	if res, err := l.Allow(ctx, "alone", limit); err != nil || !res.Allowed {
		t.Fatalf("a check alone: %+v %v", res, err)
	}
	if direct.evals.Load() == 0 || batched.evals.Load() != 0 {
		t.Fatalf("a check alone went %d direct, %d pipelined; want the plain client", direct.evals.Load(), batched.evals.Load())
	}

	var allowed, denied atomic.Int64
	start := make(chan struct{})
	done := make(chan error, 200)
	for range 200 {
		go func() {
			<-start
			res, err := l.Allow(ctx, "shared", limit)
			if res.Allowed {
				allowed.Add(1)
			} else if err == nil {
				denied.Add(1)
			}
			done <- err
		}()
	}
	close(start)
	for range 200 {
		if err := <-done; err != nil {
			t.Fatalf("check: %v", err)
		}
	}
	if allowed.Load() != 50 || denied.Load() != 150 {
		t.Errorf("allowed %d, denied %d of 200 concurrent checks; want 50 and 150", allowed.Load(), denied.Load())
	}
	if batched.evals.Load() == 0 {
		t.Error("no concurrent check went through the pipeliner")
	}
	t.Logf("%d checks direct, %d pipelined", direct.evals.Load(), batched.evals.Load())
}

// TestRedisPipelinedHonoursContext: a check that goes through the
// pipeliner (another is in flight) ends with its caller's context, as one
// on the plain client does, even when Redis says nothing: the deadline
// Resilient gives a check still bounds it.
func TestRedisPipelinedHonoursContext(t *testing.T) {
	t.Parallel()
	client, err := redisconn.NewFastClient(redistest.SilentURL(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ap, err := redisconn.AutoPipeline(client)
	if err != nil {
		t.Fatal(err)
	}
	l := NewRedis(client, "slow:", Pipelined(ap))
	// A first check holds the plain client, so the next ones are batched.
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := l.Allow(ctx, "first", PerMinute(1))
		first <- err
	}()
	for i := 0; l.inFlight.Load() == 0; i++ {
		if i > 1000 {
			t.Fatal("the first check never started")
		}
		time.Sleep(time.Millisecond)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Allow(canceled, "k", PerMinute(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("a batched check with a canceled context: %v, want context.Canceled", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Allow(short, "k", PerMinute(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a batched check past its deadline: %v, want context.DeadlineExceeded", err)
	}
	<-first
}

// panickingScripter panics on its first script, as a bug in a client
// would.
type panickingScripter struct {
	Scripter
	panicked atomic.Bool
}

func (p *panickingScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	if p.panicked.CompareAndSwap(false, true) {
		panic("scripter bug")
	}
	return p.Scripter.EvalSha(ctx, sha1, keys, args...)
}

// TestRedisPanicLeavesNoCheckInFlight: a check that panics is not counted
// as in flight afterwards, so the next check alone still takes the plain
// client rather than the pipeliner.
func TestRedisPanicLeavesNoCheckInFlight(t *testing.T) {
	t.Parallel()
	client, ap := newPipelined(t)
	batched := &countingScripter{Scripter: ap}
	l := NewRedis(&panickingScripter{Scripter: client}, redistest.Prefix(t), Pipelined(batched))
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the first check did not panic")
			}
		}()
		l.Allow(context.Background(), "k", PerMinute(50))
	}()
	if res, err := l.Allow(context.Background(), "k", PerMinute(50)); err != nil || !res.Allowed {
		t.Fatalf("the check after the panic: %+v %v", res, err)
	}
	if n := batched.evals.Load(); n != 0 {
		t.Errorf("the check after the panic went through the pipeliner (%d scripts), as if the panicked one were still in flight", n)
	}
}

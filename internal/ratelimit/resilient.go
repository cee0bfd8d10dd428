package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/parleyhq/parley/internal/clock"
)

// Resilient checks the shared limiter and survives its outages: when Redis
// is down or slow (past Timeout), a fail-open class is allowed and any other
// class is limited per instance by an in-memory limiter. After a failure the
// shared limiter is skipped for a short cool-down, so an outage does not add
// Timeout to every request; it is tried again afterwards, so limits are
// shared again by themselves once Redis is back.
type Resilient struct {
	shared Limiter
	local  *Memory
	log    *slog.Logger

	// Timeout bounds one shared check (50ms).
	Timeout time.Duration
	// Cooldown is how long the shared limiter is skipped after a failure (1s).
	Cooldown time.Duration

	// clock times the cool-down and the warnings.
	clock clock.Clock

	mu       sync.Mutex
	downTill time.Time
	lastWarn time.Time
}

// NewResilient returns a limiter on shared (nil: in-memory only). Its
// in-memory fallback runs on the same clock as its cool-down.
func NewResilient(shared Limiter, log *slog.Logger, opts ...Option) *Resilient {
	o := newOptions(opts)
	return &Resilient{
		shared:   shared,
		local:    NewMemory(WithClock(o.clock)),
		log:      log,
		Timeout:  50 * time.Millisecond,
		Cooldown: time.Second,
		clock:    o.clock,
	}
}

// Allow checks one event. It never fails: Degraded reports a check that
// could not use the shared limiter.
func (r *Resilient) Allow(ctx context.Context, key string, limit Limit, failOpen bool) (res Result, degraded bool) {
	if r.shared == nil {
		res, _ = r.local.Allow(ctx, key, limit)
		return res, false
	}
	if r.available() {
		checkCtx, cancel := context.WithTimeout(ctx, r.Timeout)
		res, err := r.shared.Allow(checkCtx, key, limit)
		cancel()
		if err == nil {
			return res, false
		}
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about Redis.
			return Result{Limit: limit}, true
		}
		r.failed(err)
	}
	if failOpen {
		return Result{Allowed: true, Limit: limit, Remaining: limit.Burst}, true
	}
	res, _ = r.local.Allow(ctx, key, limit)
	return res, true
}

func (r *Resilient) available() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clock.Now().After(r.downTill)
}

// failed starts a cool-down and warns, at most once per 10 seconds.
func (r *Resilient) failed(err error) {
	now := r.clock.Now()
	r.mu.Lock()
	r.downTill = now.Add(r.Cooldown)
	warn := now.Sub(r.lastWarn) >= 10*time.Second
	if warn {
		r.lastWarn = now
	}
	r.mu.Unlock()
	if warn {
		r.log.Warn("shared rate limiter unavailable; limiting per instance", "err", err)
	}
}

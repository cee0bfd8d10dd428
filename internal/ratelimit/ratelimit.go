// Package ratelimit limits how often a key (a user or a client IP, per
// class of RPC) may act. The shared limiter is GCRA on Redis through
// go-redis/redis_rate: one script, one round trip per check, the same count
// on every instance. Memory implements the same algorithm in process, for
// single-instance dev and as the fallback while Redis is unreachable.
package ratelimit

import (
	"context"
	"time"

	"github.com/parleyhq/parley/internal/clock"
)

// Limit allows Rate events per Period, with bursts of up to Burst.
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// PerMinute allows rate events a minute, all of them in a burst if need be.
func PerMinute(rate int) Limit { return Limit{Rate: rate, Burst: rate, Period: time.Minute} }

// Scale multiplies a limit (a plan's multiplier), keeping at least 1.
func (l Limit) Scale(f float64) Limit {
	l.Rate = max(1, int(float64(l.Rate)*f))
	l.Burst = max(1, int(float64(l.Burst)*f))
	return l
}

// Result is the outcome of one check.
type Result struct {
	Allowed bool
	Limit   Limit
	// Remaining is how many more events would be allowed right now.
	Remaining int
	// RetryAfter is how long to wait before the next event is allowed (0
	// when allowed).
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to a full burst.
	ResetAfter time.Duration
}

// Limiter checks one event against a key's limit.
type Limiter interface {
	Allow(ctx context.Context, key string, limit Limit) (Result, error)
}

// Option adjusts a limiter made by NewMemory or NewResilient.
type Option func(*options)

type options struct{ clock clock.Clock }

func newOptions(opts []Option) options {
	o := options{clock: clock.Real()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithClock sets the clock limits are counted by (default the system
// clock): Memory's windows, and Resilient's cool-down, warning throttle
// and in-memory fallback, so tests can step through them instead of
// sleeping. The Redis limiter counts by the Redis server's clock.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

package ratelimit

import (
	"context"
	"sync/atomic"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Scripter is what the shared limiter needs of a Redis client: running its
// script. A *redis.Client satisfies it, and so does the auto-pipeliner
// (redis.Client.AutoPipeline), which sends the checks that arrive together
// as one pipeline on one connection: each check still costs one round trip
// of its own, but concurrent checks share the write and the read.
type Scripter interface {
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd
	ScriptLoad(ctx context.Context, script string) *redis.StringCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// Redis is the limiter shared by every instance.
type Redis struct {
	limiter *redis_rate.Limiter
	// batched, when set, takes the checks that start while another is in
	// flight (see Pipelined); inFlight counts the checks running.
	batched  *redis_rate.Limiter
	inFlight atomic.Int64
	prefix   string
}

// RedisOption configures NewRedis.
type RedisOption func(*Redis)

// Pipelined sends the checks that start while another check is in flight
// through pipeliner (a redis.Client.AutoPipeline of the same server), which
// writes the checks that arrive together as one pipeline: under load the
// checks share their writes, reads and wake-ups, which costs about half
// the CPU per check of one command per round trip. A check that starts
// alone goes straight to the client, because the hand-off to the
// pipeliner's flusher would add to its round trip.
func Pipelined(pipeliner Scripter) RedisOption {
	return func(r *Redis) { r.batched = redis_rate.NewLimiter(pipeliner) }
}

// NewRedis returns a limiter on client; keys are stored under prefix.
func NewRedis(client Scripter, prefix string, opts ...RedisOption) *Redis {
	r := &Redis{limiter: redis_rate.NewLimiter(client), prefix: prefix}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Allow implements Limiter in one round trip (EVALSHA of redis_rate's GCRA
// script; the script is loaded on first use).
func (r *Redis) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	rl := redis_rate.Limit{Rate: limit.Rate, Burst: limit.Burst, Period: limit.Period}
	var res *redis_rate.Result
	var err error
	if r.batched != nil {
		// Deferred, so that a panic in a check cannot leave every later
		// check counted as overlapping.
		defer r.inFlight.Add(-1)
		if r.inFlight.Add(1) > 1 {
			res, err = r.allowBatched(ctx, r.prefix+key, rl)
		} else {
			res, err = r.limiter.Allow(ctx, r.prefix+key, rl)
		}
	} else {
		res, err = r.limiter.Allow(ctx, r.prefix+key, rl)
	}
	if err != nil {
		return Result{}, err
	}
	out := Result{Allowed: res.Allowed > 0, Limit: limit, Remaining: res.Remaining, ResetAfter: res.ResetAfter}
	if !out.Allowed {
		out.RetryAfter = res.RetryAfter
	}
	return out, nil
}

// allowBatched runs a check through the pipeliner. The pipeliner runs the
// commands it gathers under a context of its own, so the caller's deadline
// and cancellation would not reach the check: the caller waits for the
// answer or for ctx, whichever comes first, and a check given up on ends
// in the background within the client's own timeouts.
func (r *Redis) allowBatched(ctx context.Context, key string, limit redis_rate.Limit) (*redis_rate.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type answer struct {
		res *redis_rate.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := r.batched.Allow(context.WithoutCancel(ctx), key, limit)
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		return a.res, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Package redisconn builds every Redis client Parley uses, so that pool
// sizes, timeouts and TLS (rediss://, as Upstash and Memorystore require)
// are decided in one place: the event log's client, and the fast client of
// rate-limit checks, which must fail in milliseconds when Redis is slow.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/trace"
)

// SetLogger sends go-redis's own messages (a failed dial, a reconnect) to
// log at warn level, instead of the library's default: plain text on
// stderr, which breaks the one-JSON-object-per-line logs Cloud Logging
// reads. go-redis has one logger per process, so the last call wins.
func SetLogger(log *slog.Logger) {
	redis.SetLogger(logger{log})
}

type logger struct{ log *slog.Logger }

func (l logger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Option adjusts a client.
type Option func(*options)

type options struct{ tracer trace.TracerProvider }

// WithTracing traces the client's commands with OpenTelemetry's
// redisotel on tp: a span per command or pipeline, named by the command,
// without its arguments (they carry answers' events). Without it a
// client has no tracing hook at all.
func WithTracing(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}

// build returns a client for opt with the hooks opts ask for.
func build(opt *redis.Options, opts []Option) (*redis.Client, error) {
	var o options
	for _, apply := range opts {
		apply(&o)
	}
	c := redis.NewClient(opt)
	if o.tracer != nil {
		if err := redisotel.InstrumentTracing(c, redisotel.WithTracerProvider(o.tracer),
			redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
			c.Close()
			return nil, fmt.Errorf("trace Redis client: %w", err)
		}
	}
	return c, nil
}

// defaultPoolSize replaces go-redis's default of 10 per CPU. Followers hold
// no connection while they wait (see broker.Redis.Follow), but each live
// answer's mirror writes, each woken follower reads and the rate limiter's
// checks come in bursts; idle connections are closed again, so the size is
// a cap, not a standing cost.
const defaultPoolSize = 256

// Buffer sizes per connection. go-redis gives each connection 32 KiB for
// reading and 32 KiB for writing (128 KiB each on its pipeline pool), sized
// for large values; Parley's commands and replies are events of a few
// hundred bytes, batched by the dozen (a mirror write, a follower's read),
// and with hundreds of answers open those buffers were a fifth of the
// memory each open answer costs (TestProfileHeld). A reply larger than the
// buffer is still read whole, in more reads.
const (
	connBufferSize     = 8 << 10
	pipelineBufferSize = 16 << 10
)

// NewClient returns a client for a redis:// or rediss:// (TLS, as Upstash
// and Memorystore require) URL. A pool_size in the URL wins over the
// default pool size. It does not connect.
//
// The client honours its callers' context deadlines on every socket read
// and write (go-redis does not by default, and applies only its own
// ReadTimeout and WriteTimeout, 5 s by default): a call bounded at 2 s, such as a
// mirror write to the event log, ends at 2 s against a Redis that accepts
// connections and stalls. The client's timeouts still bound calls whose
// context has no deadline. A call cut short by its deadline closes its
// connection (its reply may still be coming), so deadlines shorter than
// Redis's usual latency would cost dials: the callers' are 250 ms (a
// response-cache read) and up.
func NewClient(redisURL string, opts ...Option) (*redis.Client, error) {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		// url.Error repeats the URL, password included; keep only the cause.
		if urlErr, ok := errors.AsType[*url.Error](err); ok {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("parse Redis URL: %w", err)
	}
	if opt.PoolSize == 0 {
		opt.PoolSize = defaultPoolSize
	}
	opt.ContextTimeoutEnabled = true
	opt.ReadBufferSize, opt.WriteBufferSize = connBufferSize, connBufferSize
	opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
	// Maintenance notifications are a Redis Cloud feature that Upstash and
	// Memorystore do not speak; probing for them logs non-JSON lines.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return build(opt, opts)
}

// NewFastClient is NewClient for calls that must fail fast when Redis is
// slow, such as rate-limit checks: it also bounds every dial, socket
// read and write and pool wait by timeout, and does not retry.
func NewFastClient(redisURL string, timeout time.Duration, opts ...Option) (*redis.Client, error) {
	c, err := NewClient(redisURL)
	if err != nil {
		return nil, err
	}
	opt := c.Options()
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
	opt.MaxRetries = -1 // a check is not retried: the fallback is the answer
	c.Close()
	return build(opt, opts)
}

// pipelineBatch is the batch size AutoPipeline asks for: go-redis keeps
// its batch queues in a pool at a capacity of 100 commands, and when
// MaxBatchSize is larger (300 by default) every flush allocates a new
// queue of MaxBatchSize entries instead (4.8 KB a flush; under load, about
// 7 % of the bytes a rate-limited GetConversation allocated). The size
// is a soft threshold: under a burst a batch grows past it.
const pipelineBatch = 100

// AutoPipeline is c's auto-pipeliner (go-redis's blocking face, shared by
// every caller of c), with batches of pipelineBatch commands.
func AutoPipeline(c *redis.Client) (*redis.AutoPipeliner, error) {
	opt := redis.DefaultBlockingAutoPipelineOptions()
	opt.MaxBatchSize = pipelineBatch
	return c.AutoPipelineWithOptions(opt)
}

package redisconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestNewClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		url      string
		addr     string
		db       int
		tls      bool
		poolSize int // 0: only check that it is larger than go-redis's default
	}{
		{name: "Redis", url: "redis://127.0.0.1:6379/2", addr: "127.0.0.1:6379", db: 2},
		{name: "RedisTLS", url: "rediss://default:secret@example.upstash.io:6380", addr: "example.upstash.io:6380", tls: true},
		{name: "PoolSizeInURL", url: "redis://127.0.0.1:6379?pool_size=7", addr: "127.0.0.1:6379", poolSize: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := redisconn.NewClient(tt.url)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer client.Close()
			opt := client.Options()
			if opt.Addr != tt.addr || opt.DB != tt.db || (opt.TLSConfig != nil) != tt.tls {
				t.Errorf("Addr, DB, TLS = %q, %d, %t; want %q, %d, %t",
					opt.Addr, opt.DB, opt.TLSConfig != nil, tt.addr, tt.db, tt.tls)
			}
			if tt.poolSize != 0 && opt.PoolSize != tt.poolSize {
				t.Errorf("PoolSize = %d, want %d from the URL", opt.PoolSize, tt.poolSize)
			}
			if tt.poolSize == 0 && opt.PoolSize < 100 {
				t.Errorf("PoolSize = %d, want room for many followers", opt.PoolSize)
			}
		})
	}
}

func TestNewClientErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
	}{
		{name: "Scheme", url: "http://user:secret@127.0.0.1:6379"},
		{name: "Malformed", url: "redis://user:secret@127.0.0.1:port\x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisconn.NewClient(tt.url)
			if err == nil {
				t.Fatal("NewClient succeeded")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// TestLargeRepliesThroughSmallBuffers: the connection buffers are small
// (Parley's events are), but a value, a pipeline and a stream entry many
// times their size still go through whole, against a real Redis.
func TestLargeRepliesThroughSmallBuffers(t *testing.T) {
	t.Parallel()
	client, err := redisconn.NewClient(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := t.Context()
	key := redistest.Prefix(t) + "big"
	big := strings.Repeat("parley-", 40_000) // 280 kB: 35 times the buffer
	if err := client.Set(ctx, key, big, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, key).Result(); err != nil || got != big {
		t.Fatalf("GET returned %d bytes (%v); want %d", len(got), err, len(big))
	}
	pipe := client.Pipeline()
	var gets []*redis.StringCmd
	for range 20 {
		gets = append(gets, pipe.Get(ctx, key))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, g := range gets {
		if g.Val() != big {
			t.Fatalf("pipelined GET %d returned %d bytes; want %d", i, len(g.Val()), len(big))
		}
	}
	stream := key + ":events"
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"e": big}}).Err(); err != nil {
		t.Fatal(err)
	}
	msgs, err := client.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(msgs) != 1 || msgs[0].Values["e"] != big {
		t.Fatalf("XRANGE: %d entries (%v)", len(msgs), err)
	}
	client.Del(ctx, key, stream)
}

// TestNewClientHonoursDeadlines: against a Redis that accepts connections
// and never answers, a command and a pipeline end at their context's
// deadline, not at the client's read timeout (5 s) (the mirror bounds each
// write to the event log this way).
func TestNewClientHonoursDeadlines(t *testing.T) {
	t.Parallel()
	client, err := redisconn.NewClient(redistest.SilentURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const bound = 200 * time.Millisecond
	calls := map[string]func(context.Context) error{
		"command": func(ctx context.Context) error { return client.Ping(ctx).Err() },
		"pipeline": func(ctx context.Context) error {
			_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []string{"k", "v"}})
				p.Expire(ctx, "s", time.Minute)
				return nil
			})
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(t.Context(), bound)
		begin := time.Now()
		err := call(ctx)
		took := time.Since(begin)
		cancel()
		var netErr net.Error
		if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &netErr) && netErr.Timeout()) {
			t.Errorf("%s: %v, want a timeout from a Redis that never answers", name, err)
		}
		if took < bound/2 || took > bound+time.Second {
			t.Errorf("%s took %v with a %v deadline: the deadline did not bound the socket", name, took.Round(time.Millisecond), bound)
		}
	}
}

// TestAutoPipeline: the pipeliner batches at most 100 commands, the
// capacity go-redis pools its batch queues at (so a flush reuses a queue
// instead of allocating one of MaxBatchSize entries), and commands that
// overlap all run.
func TestAutoPipeline(t *testing.T) {
	t.Parallel()
	client, err := redisconn.NewClient(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ap, err := redisconn.AutoPipeline(client)
	if err != nil {
		t.Fatal(err)
	}
	if got := ap.Config().MaxBatchSize; got != 100 {
		t.Errorf("MaxBatchSize = %d, want 100 (go-redis's pooled queue capacity)", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := "redisconn-test:autopipeline:" + t.Name()
	const callers, each = 32, 20
	errs := make(chan error, callers)
	for range callers {
		go func() {
			var err error
			for range each {
				if err = ap.Incr(ctx, key).Err(); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := client.Get(ctx, key).Int(); err != nil || n != callers*each {
		t.Errorf("counter = %d, %v; want %d", n, err, callers*each)
	}
	client.Del(ctx, key)
}

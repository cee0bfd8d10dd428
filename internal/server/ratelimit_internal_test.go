package server

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
)

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, ip, want string }{
		{"IPv4", "203.0.113.7", "203.0.113.7"},
		{"IPv4MappedIPv6", "::ffff:203.0.113.7", "203.0.113.7"},
		{"IPv6", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6SameNetwork", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"IPv6Zone", "fe80::1%eth0", "fe80::/64"},
		{"NotAnAddress", "pipe", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := clientKey(tt.ip); got != tt.want {
				t.Errorf("clientKey(%q) = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
}

// newRedisRateLimiter is the interceptor on the test Redis, limits of 100
// calls a minute.
func newRedisRateLimiter(t *testing.T) *rateLimiter {
	client, err := redisconn.NewClient(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	log := slog.New(slog.DiscardHandler)
	return &rateLimiter{
		log:     log,
		limiter: ratelimit.NewResilient(ratelimit.NewRedis(client, redistest.Prefix(t)), log),
		limits:  RateLimits{Chat: ratelimit.PerMinute(100), Agent: ratelimit.PerMinute(100), General: ratelimit.PerMinute(100)},
	}
}

// TestRateLimiterCallerGone: a call whose context ends during its limit
// check (its deadline passes, or its client leaves) is answered with that,
// not with a refusal to retry in 0 seconds, and reaches no handler.
func TestRateLimiterCallerGone(t *testing.T) {
	t.Parallel()
	l := newRedisRateLimiter(t)
	handler := l.WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		t.Error("the handler ran for a call whose context had ended")
		return nil, nil
	})
	for _, tt := range []struct {
		name string
		end  func(context.Context) (context.Context, context.CancelFunc)
		want connect.Code
	}{
		{"Canceled", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx, cancel
		}, connect.CodeCanceled},
		{"DeadlineExceeded", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithDeadline(ctx, time.Now().Add(-time.Second))
		}, connect.CodeDeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.end(t.Context())
			defer cancel()
			_, err := handler(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			if got := connect.CodeOf(err); got != tt.want {
				t.Errorf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// fakeStreamConn is the least of a streaming call that the limiter reads.
type fakeStreamConn struct {
	connect.StreamingHandlerConn
	req, res http.Header
}

func (c *fakeStreamConn) Spec() connect.Spec          { return connect.Spec{Procedure: "/test/Stream"} }
func (c *fakeStreamConn) Peer() connect.Peer          { return connect.Peer{Addr: "127.0.0.1:1"} }
func (c *fakeStreamConn) RequestHeader() http.Header  { return c.req }
func (c *fakeStreamConn) ResponseHeader() http.Header { return c.res }

// TestRateLimiterCallerGoneStream: the same for a streaming call, whose
// headers then carry neither limit headers nor an empty Retry-After.
func TestRateLimiterCallerGoneStream(t *testing.T) {
	t.Parallel()
	l := newRedisRateLimiter(t)
	handler := l.WrapStreamingHandler(func(context.Context, connect.StreamingHandlerConn) error {
		t.Error("the handler ran for a call whose context had ended")
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	conn := &fakeStreamConn{req: http.Header{}, res: http.Header{}}
	if err := handler(ctx, conn); connect.CodeOf(err) != connect.CodeCanceled {
		t.Errorf("got %v (%v), want canceled", connect.CodeOf(err), err)
	}
	if len(conn.res) != 0 {
		t.Errorf("response headers %v, want none", conn.res)
	}
	// A live call gets its limit headers.
	conn = &fakeStreamConn{req: http.Header{}, res: http.Header{}}
	live := l.WrapStreamingHandler(func(context.Context, connect.StreamingHandlerConn) error { return nil })
	if err := live(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	if conn.res.Get("RateLimit-Remaining") == "" || conn.res.Get("Retry-After") != "" {
		t.Errorf("a live call's headers %v, want the limit headers and no Retry-After", conn.res)
	}
}

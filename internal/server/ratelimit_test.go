package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/server"
)

// TestAuthFailureFloodIPv6: one IPv6 client holds a whole /64 (SLAAC and
// privacy addresses rotate the low 64 bits at will), so bad tokens from any
// address in it count together; the neighbouring /64 is another client.
func TestAuthFailureFloodIPv6(t *testing.T) {
	t.Parallel()
	limits := server.RateLimits{
		Chat: ratelimit.PerMinute(100), Agent: ratelimit.PerMinute(100), General: ratelimit.PerMinute(100),
		AuthFailures: ratelimit.PerMinute(3),
	}
	env := apitest.New(t, apitest.Options{RateLimits: &limits, TrustedProxyHops: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	for i, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			// Each protocol floods from its own /64 of 2001:db8::/32.
			network := fmt.Sprintf("2001:db8:%x:1:", i+1)
			call := func(xff string) error {
				c := parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor(protocol), env.URL,
					append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer("not.a.token"),
						connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
							return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
								req.Header().Set("X-Forwarded-For", xff)
								return next(ctx, req)
							}
						})))...)
				_, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
				return err
			}
			for n := range 3 {
				// A new interface identifier each time, as privacy
				// addresses give.
				if err := call(fmt.Sprintf("%s%x:%x::%x", network, n+1, n*7+3, n*13+5)); connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Fatalf("bad token %d: %v, want unauthenticated", n, err)
				}
			}
			if err := call(network + "ffff:ffff:ffff:ffff"); connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("fourth bad token from the same /64: %v, want resource_exhausted", err)
			}
			// The next /64 belongs to someone else.
			if err := call(fmt.Sprintf("2001:db8:%x:2::1", i+1)); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("bad token from the neighbouring /64: %v, want unauthenticated", err)
			}
		})
	}
}

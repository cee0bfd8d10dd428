package reliability

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// TestJWKSFaults: Supabase's JWKS endpoint goes down. An instance that
// has its keys keeps verifying tokens; one that starts meanwhile refuses
// every token with unauthenticated (never internal, never a hang) and
// accepts them once the endpoint is back, without a restart; a rotated
// signing key (a new kid) is picked up by both without a restart.
func TestJWKSFaults(t *testing.T) {
	t.Parallel() // mostly waiting for the verifier's refresh limiter
	c := newCluster(t, options{Instances: 2, Deferred: []int{1}})
	ctx := testContext(t, 2*time.Minute)
	list := func(i int, token string) error {
		_, err := c.Chat(i, token).ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
		return err
	}
	token := c.Supabase.Token(t, newUser())
	if err := list(0, token); err != nil {
		t.Fatalf("with the JWKS up: %v", err)
	}

	c.Supabase.SetDown(true)
	// A token never seen before, signed by the known key: verified from
	// the cached keys, not from a cached verdict.
	if err := list(0, c.Supabase.Token(t, newUser())); err != nil {
		t.Errorf("cached keys with the JWKS down: %v, want ok", err)
	}
	c.Start(1)
	err := list(1, token)
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("an instance started with the JWKS down: %v, want unauthenticated", err)
	} else if strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "503") {
		t.Errorf("the refusal shows internals: %v", err)
	}

	c.Supabase.SetDown(false)
	took := eventually(t, 30*time.Second, func() error { return list(1, token) })
	t.Logf("parley-1 verified tokens %v after the JWKS came back", took)

	c.Supabase.Rotate(t)
	rotated := c.Supabase.Token(t, newUser())
	for i := range c.Inst {
		took := eventually(t, 30*time.Second, func() error { return list(i, rotated) })
		t.Logf("%s accepted the rotated key after %v", c.Inst[i].name, took)
		if err := list(i, token); err != nil {
			t.Errorf("%s refuses the old key, still published: %v", c.Inst[i].name, err)
		}
	}
}

// eventually retries f every 200 ms until it succeeds, failing tb after
// timeout; it returns how long it took.
func eventually(tb testing.TB, timeout time.Duration, f func() error) time.Duration {
	tb.Helper()
	begin := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(begin)
		}
		if time.Since(begin) > timeout {
			tb.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

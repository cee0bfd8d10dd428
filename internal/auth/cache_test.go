package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestVerifyCache: a verified token is remembered, but never past its
// expiry, and a token that differs only in its signature is still checked.
func TestVerifyCache(t *testing.T) {
	t.Parallel()
	key, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Issuer: "http://cache.test/auth/v1", Leeway: time.Nanosecond}
	v, err := NewStaticVerifier(cfg, key.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	token, err := key.Sign(cfg.Issuer, uuid.New(), 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v.Verify(ctx, token)
	if err != nil || again != first {
		t.Fatalf("second verification: %+v %v", again, err)
	}
	forged := token[:len(token)-4] + "AAAA"
	if _, err := v.Verify(ctx, forged); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token with another signature passed: %v", err)
	}
	time.Sleep(time.Until(first.ExpiresAt) + 50*time.Millisecond)
	if _, err := v.Verify(ctx, token); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an expired token passed from the cache: %v", err)
	}
}

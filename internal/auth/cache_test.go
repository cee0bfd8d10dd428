package auth

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/clock"
)

// newCacheTestVerifier returns a static verifier whose clock is a fake one
// at a fixed instant, and a token for it issued at that instant, valid for
// tokenTTL. The instant is long past, so a verifier that judged tokens by
// the real clock would refuse every one.
func newCacheTestVerifier(tb testing.TB, leeway, tokenTTL time.Duration) (*Verifier, *clock.Fake, string) {
	tb.Helper()
	key := newECKey(tb, "cache")
	jwks, err := json.Marshal(map[string]any{"keys": []any{key.jwk}})
	if err != nil {
		tb.Fatal(err)
	}
	const iss = "http://cache.test/auth/v1"
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	v, err := NewStaticVerifier(Config{Issuer: iss, Leeway: leeway, Now: fake.Now}, jwks)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	token := key.sign(tb, supabaseClaims(iss, uuid.New(), func(c jwt.MapClaims) {
		c["iat"] = fake.Now().Unix()
		c["exp"] = fake.Now().Add(tokenTTL).Unix()
	}))
	return v, fake, token
}

// TestVerifyCache: a verified token is remembered until it expires or for
// the cache's ttl, whichever comes first, and not a moment longer. Past its
// expiry (and the leeway) it is refused, not served from the cache.
func TestVerifyCache(t *testing.T) {
	t.Parallel()
	const leeway = time.Second
	tests := []struct {
		name     string
		tokenTTL time.Duration
		// elapsed is the time between the first verification and the check.
		elapsed    time.Duration
		wantCached bool
		wantErr    error // from Verify at that moment; nil for success
	}{
		{"CachedUntilJustBeforeExpiry", time.Minute, time.Minute - time.Nanosecond, true, nil},
		{"NotCachedAtExpiry", time.Minute, time.Minute, false, nil}, // still within the leeway
		{"ErrExpired", time.Minute, time.Minute + leeway, false, jwt.ErrTokenExpired},
		{"CachedUntilJustBeforeTTL", time.Hour, maxCacheTTL - time.Nanosecond, true, nil},
		{"NotCachedAtTTL", time.Hour, maxCacheTTL, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, fake, token := newCacheTestVerifier(t, leeway, tt.tokenTTL)
			header := http.Header{"Authorization": {"Bearer " + token}}
			if v.Recognizes(header) {
				t.Fatal("Recognizes a token before verifying it")
			}
			first, err := verifyWithin(t, v, token, 5*time.Second)
			if err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			fake.Advance(tt.elapsed)
			if got := v.Recognizes(header); got != tt.wantCached {
				t.Errorf("Recognizes %v after %v = %v; want %v", tt.tokenTTL, tt.elapsed, got, tt.wantCached)
			}
			again, err := verifyWithin(t, v, token, 5*time.Second)
			if tt.wantErr != nil {
				if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tt.wantErr) {
					t.Errorf("Verify after %v: %+v, %v; want %v", tt.elapsed, again, err, tt.wantErr)
				}
				return
			}
			if err != nil || again != first {
				t.Errorf("Verify after %v: %+v, %v; want %+v", tt.elapsed, again, err, first)
			}
		})
	}
}

// TestVerifyCacheKeyIsWholeToken: a token that differs from a cached one
// only in its signature is checked, not served from the cache.
func TestVerifyCacheKeyIsWholeToken(t *testing.T) {
	t.Parallel()
	v, _, token := newCacheTestVerifier(t, time.Second, time.Hour)
	if _, err := verifyWithin(t, v, token, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	forged := token[:len(token)-4] + "AAAA"
	if _, err := verifyWithin(t, v, forged, 5*time.Second); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token with another signature passed: %v", err)
	}
}

// TestTokenKey: the key is the SHA-256 of the whole token whatever its
// length, also when concurrent calls share the pooled copies.
func TestTokenKey(t *testing.T) {
	lengths := []int{0, 1, 31, 32, 33, 600, 2 << 10, 3 << 10, maxPooledToken, maxPooledToken + 1, 64 << 10}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := range 50 {
				for _, n := range lengths {
					token := strings.Repeat(string(rune('a'+(w+round+n)%26)), n)
					if got, want := tokenKey(token), sha256.Sum256([]byte(token)); got != want {
						t.Errorf("token of %d bytes: key %x, want %x", n, got, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

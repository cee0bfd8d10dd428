package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/auth"
)

// BenchmarkVerify is the per-request cost of authentication once the JWKS
// is cached. "New" verifies a token the verifier has not seen (a new
// session, or every call before tokens were remembered): the signature
// check. "Again" verifies the same token again, as every later call of a
// session does. ES256 is what Supabase issues with asymmetric keys, HS256
// the legacy shared secret.
func BenchmarkVerify(b *testing.B) {
	const issuer = "http://bench.localhost/auth/v1"
	secret := []byte("legacy-supabase-jwt-secret-at-least-32-bytes")
	key, err := auth.LoadOrCreateDevKey(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	static, err := auth.NewStaticVerifier(auth.Config{Issuer: issuer, HS256Secret: secret}, key.JWKS())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// The production verifier: keys fetched from a JWKS URL and cached.
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(key.JWKS())
	}))
	b.Cleanup(jwks.Close)
	fetched, err := auth.NewVerifier(ctx, auth.Config{Issuer: issuer, JWKSURL: jwks.URL, HS256Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fetched.Close)

	es256 := func(b *testing.B) string {
		token, err := key.Sign(issuer, uuid.New(), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		return token
	}
	hs256 := func(b *testing.B) string {
		now := time.Now()
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": issuer, "sub": uuid.NewString(), "aud": "authenticated", "role": "authenticated",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "session_id": uuid.NewString(),
		}).SignedString(secret)
		if err != nil {
			b.Fatal(err)
		}
		return token
	}
	for _, tc := range []struct {
		name     string
		verifier *auth.Verifier
		sign     func(*testing.B) string
	}{
		{"ES256", static, es256},
		{"ES256FromJWKSURL", fetched, es256},
		{"HS256", static, hs256},
	} {
		b.Run(tc.name+"/New", func(b *testing.B) {
			tokens := make([]string, b.N)
			for i := range tokens {
				tokens[i] = tc.sign(b)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := tc.verifier.Verify(ctx, tokens[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/Again", func(b *testing.B) {
			token := tc.sign(b)
			if _, err := tc.verifier.Verify(ctx, token); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.verifier.Verify(ctx, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// testKey is a signing key plus its public JWK exactly as Supabase publishes
// it (including the WebCrypto "ext" and "key_ops" members).
type testKey struct {
	kid     string
	method  jwt.SigningMethod
	private crypto.Signer
	jwk     map[string]any
}

func newECKey(tb testing.TB, kid string) testKey {
	tb.Helper()
	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	point, err := private.PublicKey.Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	return testKey{
		kid:     kid,
		method:  jwt.SigningMethodES256,
		private: private,
		jwk: map[string]any{
			"alg": "ES256", "crv": "P-256", "ext": true, "key_ops": []string{"verify"},
			"kid": kid, "kty": "EC", "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(point[1:33]),
			"y": base64.RawURLEncoding.EncodeToString(point[33:]),
		},
	}
}

func newRSAKey(tb testing.TB, kid string) testKey {
	tb.Helper()
	private, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return testKey{
		kid:     kid,
		method:  jwt.SigningMethodRS256,
		private: private,
		jwk: map[string]any{
			"alg": "RS256", "ext": true, "key_ops": []string{"verify"},
			"kid": kid, "kty": "RSA", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(private.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(private.E)).Bytes()),
		},
	}
}

// sign signs claims with k under k's own kid.
func (k testKey) sign(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	return k.signAs(tb, k.kid, claims)
}

// signAs signs claims with k but puts kid in the header, to forge or to
// point at keys the verifier does not know.
func (k testKey) signAs(tb testing.TB, kid string, claims jwt.MapClaims) string {
	tb.Helper()
	token := jwt.NewWithClaims(k.method, claims)
	token.Header["kid"] = kid
	signed, err := token.SignedString(k.private)
	if err != nil {
		tb.Fatal(err)
	}
	return signed
}

// supabaseClaims returns the payload of a valid Supabase access token for
// userID from issuer, with edit applied (nil for none).
func supabaseClaims(issuer string, userID uuid.UUID, edit func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss":          issuer,
		"sub":          userID.String(),
		"aud":          "authenticated",
		"exp":          now.Add(time.Hour).Unix(),
		"iat":          now.Unix(),
		"email":        "ada@example.com",
		"phone":        "",
		"role":         "authenticated",
		"aal":          "aal1",
		"session_id":   "5f0e3a57-3c1d-4f4e-9a55-0c7d0c6c1f00",
		"is_anonymous": false,
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// jwksServer serves a JWK Set the way Supabase's /auth/v1/.well-known/jwks.json
// does, counts fetches, and can fail or stall its first answers.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64

	mu        sync.Mutex
	keys      []testKey
	failFirst int64         // answer this many first requests with 503
	stall     chan struct{} // if non-nil, the first request waits for it to close
	stalled   chan struct{} // closed when the first request starts waiting
}

func newJWKSServer(tb testing.TB, keys ...testKey) *jwksServer {
	tb.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	tb.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/auth/v1/.well-known/jwks.json" {
		http.NotFound(w, r)
		return
	}
	n := s.fetches.Add(1)
	s.mu.Lock()
	failFirst, stall, stalled := s.failFirst, s.stall, s.stalled
	s.mu.Unlock()
	if n == 1 && stall != nil {
		close(stalled)
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	if n <= failFirst {
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	set := map[string][]map[string]any{"keys": {}}
	for _, k := range s.keys {
		set["keys"] = append(set["keys"], k.jwk)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=600")
	json.NewEncoder(w).Encode(set)
}

func (s *jwksServer) setKeys(keys ...testKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *jwksServer) issuer() string  { return s.URL + "/auth/v1" }
func (s *jwksServer) jwksURL() string { return s.issuer() + "/.well-known/jwks.json" }

// config returns a Config pointing at s.
func (s *jwksServer) config() Config {
	return Config{Issuer: s.issuer(), JWKSURL: s.jwksURL(), HTTPClient: s.Client()}
}

// newTestVerifier starts a JWKS-backed Verifier that is closed with the test.
func newTestVerifier(tb testing.TB, cfg Config) *Verifier {
	tb.Helper()
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	tb.Cleanup(v.Close)
	return v
}

// verifyWithin calls Verify with a deadline so a hang fails the test instead
// of timing out the whole package.
func verifyWithin(tb testing.TB, v *Verifier, token string, d time.Duration) (Claims, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), d)
	defer cancel()
	return v.Verify(ctx, token)
}

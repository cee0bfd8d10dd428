package auth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/clock"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	ecKey := newECKey(t, "ec-1")
	rsaKey := newRSAKey(t, "rsa-1")
	srv := newJWKSServer(t, ecKey, rsaKey)
	secret := []byte("legacy-supabase-jwt-secret-at-least-32-bytes")
	noSecret := newTestVerifier(t, srv.config())
	cfgWithSecret := srv.config()
	cfgWithSecret.HS256Secret = secret
	withSecret := newTestVerifier(t, cfgWithSecret)

	userID := uuid.New()
	iss := srv.issuer()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims { return supabaseClaims(iss, userID, edit) }
	now := time.Now()
	wantClaims := Claims{
		UserID:    userID,
		Email:     "ada@example.com",
		Role:      "authenticated",
		SessionID: "5f0e3a57-3c1d-4f4e-9a55-0c7d0c6c1f00",
		ExpiresAt: time.Unix(now.Add(time.Hour).Unix(), 0),
	}

	// The algorithm-confusion attack: HMAC keyed with the public key as the
	// server might hold it (PEM, as in the original advisories).
	ecPublicDER, err := x509.MarshalPKIXPublicKey(ecKey.private.Public())
	if err != nil {
		t.Fatal(err)
	}
	ecPublicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPublicDER})
	hs256 := func(key []byte, kid string) string {
		token := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
		if kid != "" {
			token.Header["kid"] = kid
		}
		signed, err := token.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}

	tests := []struct {
		name     string
		verifier *Verifier
		token    string
		wantErr  error // nil: the token verifies and yields wantClaims
	}{
		{"OKES256", noSecret, ecKey.sign(t, claims(nil)), nil},
		{"OKRS256", noSecret, rsaKey.sign(t, claims(nil)), nil},
		{"OKAudienceArray", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["aud"] = []string{"other", "authenticated"} })), nil},
		{"ErrExpired", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-2 * time.Hour).Unix()
			c["exp"] = now.Add(-time.Hour).Unix()
		})), jwt.ErrTokenExpired},
		{"ErrNoExpiry", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { delete(c, "exp") })), jwt.ErrTokenRequiredClaimMissing},
		{"ErrNotYetValid", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() })), jwt.ErrTokenNotValidYet},
		{"ErrIssuedInFuture", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() })), jwt.ErrTokenUsedBeforeIssued},
		{"ErrWrongIssuer", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["iss"] = "https://other.supabase.co/auth/v1" })), jwt.ErrTokenInvalidIssuer},
		{"ErrWrongAudience", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["aud"] = "anon" })), jwt.ErrTokenInvalidAudience},
		{"ErrNoAudience", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { delete(c, "aud") })), jwt.ErrTokenRequiredClaimMissing},
		{"ErrAlgNone", noSecret, unsignedToken(t, ecKey.kid, claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"ErrAlgNoneSecretSet", withSecret, unsignedToken(t, ecKey.kid, claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"ErrHS256PublicKeyNoSecret", noSecret, hs256(ecPublicPEM, ecKey.kid), jwt.ErrTokenSignatureInvalid},
		{"ErrHS256PublicKeySecretSet", withSecret, hs256(ecPublicPEM, ecKey.kid), jwt.ErrTokenSignatureInvalid},
		{"ErrHS256PublicKeyDERSecretSet", withSecret, hs256(ecPublicDER, ecKey.kid), jwt.ErrTokenSignatureInvalid},
		{"ErrHS256SecretNotConfigured", noSecret, hs256(secret, ""), jwt.ErrTokenSignatureInvalid},
		{"OKHS256Secret", withSecret, hs256(secret, ""), nil},
		{"OKHS256SecretWithKID", withSecret, hs256(secret, "legacy-secret"), nil},
		{"OKES256SecretSet", withSecret, ecKey.sign(t, claims(nil)), nil},
		{"ErrWrongKeySameKID", noSecret, newECKey(t, "").signAs(t, ecKey.kid, claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"ErrRS256WithECKID", noSecret, rsaKey.signAs(t, ecKey.kid, claims(nil)), jwt.ErrTokenUnverifiable},
		{"ErrSubNotUUID", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["sub"] = "user-42" })), errBadSubject},
		{"ErrSubUUIDNoHyphens", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["sub"] = strings.ReplaceAll(userID.String(), "-", "") })), errBadSubject},
		{"ErrSubNil", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["sub"] = uuid.Nil.String() })), errBadSubject},
		{"ErrNoSub", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { delete(c, "sub") })), errBadSubject},
		{"ErrRoleAnon", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["role"] = "anon" })), errBadRole},
		{"ErrRoleServiceRole", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["role"] = "service_role" })), errBadRole},
		{"ErrNoRole", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { delete(c, "role") })), errBadRole},
		{"ErrRoleWrongType", noSecret, ecKey.sign(t, claims(func(c jwt.MapClaims) { c["role"] = 7 })), jwt.ErrTokenMalformed},
		{"ErrEmpty", noSecret, "", errEmptyToken},
		{"ErrTooLong", noSecret, strings.Repeat("a", maxTokenLen+1), errTokenTooLong},
		{"ErrGarbage", noSecret, "not.a.jwt", jwt.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := verifyWithin(t, tt.verifier, tt.token, 10*time.Second)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify error = %v; want %v wrapped with ErrInvalidToken", err, tt.wantErr)
				}
				if diff := cmp.Diff(Claims{}, got); diff != "" {
					t.Errorf("Verify returned claims with an error (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(wantClaims, got, cmpopts.EquateApproxTime(2*time.Second)); diff != "" {
				t.Errorf("claims mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "k1")
	srv := newJWKSServer(t, key)
	v := newTestVerifier(t, srv.config())
	now := time.Now()
	tests := []struct {
		name    string
		edit    func(jwt.MapClaims)
		wantErr error
	}{
		{"OKExpired10sAgo", func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }, nil},
		{"OKNotBeforeIn10s", func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() }, nil},
		{"OKIssuedIn10s", func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Second).Unix() }, nil},
		{"ErrExpired1mAgo", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }, jwt.ErrTokenExpired},
		{"ErrNotBeforeIn1m", func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }, jwt.ErrTokenNotValidYet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := key.sign(t, supabaseClaims(srv.issuer(), uuid.New(), tt.edit))
			_, err := verifyWithin(t, v, token, 10*time.Second)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify error = %v; want %v (30s default leeway)", err, tt.wantErr)
			}
		})
	}
}

// unsignedToken builds an "alg": "none" token by hand, as an attacker would.
func unsignedToken(tb testing.TB, kid string, claims jwt.MapClaims) string {
	tb.Helper()
	header, err := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc(header) + "." + enc(payload) + "."
}

func TestVerifyUnknownKIDBurst(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "known")
	srv := newJWKSServer(t, key)
	v := newTestVerifier(t, srv.config())
	userID := uuid.New()

	// A valid token first, so the initial fetch is done and counted.
	if _, err := verifyWithin(t, v, key.sign(t, supabaseClaims(srv.issuer(), userID, nil)), 10*time.Second); err != nil {
		t.Fatalf("Verify known kid: %v", err)
	}
	before := srv.fetches.Load()

	const burst = 50
	tokens := make([]string, burst)
	for i := range tokens {
		tokens[i] = key.signAs(t, fmt.Sprintf("unknown-%d", i), supabaseClaims(srv.issuer(), userID, nil))
	}
	start := time.Now()
	errs := make([]error, burst)
	var wg sync.WaitGroup
	for i, token := range tokens {
		wg.Go(func() {
			_, errs[i] = verifyWithin(t, v, token, 10*time.Second)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	for i, err := range errs {
		// Either "key not found" after the one refresh, or the limiter's
		// refusal to wait for the next: both are keyfunc failures.
		if !errors.Is(err, jwt.ErrTokenUnverifiable) {
			t.Errorf("token %d: Verify error = %v; want unverifiable", i, err)
		}
	}
	// One refresh is allowed (the limiter's burst); allow one more for a
	// refill on a slow machine, but nothing close to one per token.
	if extra := srv.fetches.Load() - before; extra < 1 || extra > 2 {
		t.Errorf("burst of %d unknown kids caused %d JWKS fetches; want 1 or 2", burst, extra)
	}
	if elapsed > unknownKIDWait {
		t.Errorf("burst took %v; want under %v", elapsed, unknownKIDWait)
	}

	// The cache survived the burst: known tokens still verify without a fetch.
	before = srv.fetches.Load()
	if _, err := verifyWithin(t, v, key.sign(t, supabaseClaims(srv.issuer(), userID, nil)), 10*time.Second); err != nil {
		t.Fatalf("Verify known kid after burst: %v", err)
	}
	if got := srv.fetches.Load(); got != before {
		t.Errorf("known kid caused %d fetches; want 0", got-before)
	}
}

func TestNewVerifierJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*jwksServer) (up func())
	}{
		{"OK503First", func(s *jwksServer) func() {
			s.failFirst = 1
			return func() {}
		}},
		{"OKFirstFetchHangs", func(s *jwksServer) func() {
			s.stall, s.stalled = make(chan struct{}), make(chan struct{})
			return func() {
				select {
				case <-s.stalled:
				case <-time.After(5 * time.Second):
					t.Error("first JWKS fetch never arrived")
				}
				close(s.stall)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := newECKey(t, "k1")
			srv := newJWKSServer(t, key)
			up := tt.setup(srv)

			start := time.Now()
			v := newTestVerifier(t, srv.config())
			if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
				t.Errorf("NewVerifier took %v; it must not wait for the JWKS", elapsed)
			}
			up()

			token := key.sign(t, supabaseClaims(srv.issuer(), uuid.New(), nil))
			if _, err := verifyWithin(t, v, token, 10*time.Second); err != nil {
				t.Fatalf("Verify once the JWKS is up: %v", err)
			}
		})
	}
}

// TestVerifyJWKSBackAfterRefusal: an instance that started while the JWKS
// was down and has already refused a token for it verifies the next one
// within about a second of the JWKS's return, not after the unknown-kid
// limit of 15 s; once a token has verified, made-up kids are limited to
// one fetch per 15 s again.
func TestVerifyJWKSBackAfterRefusal(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "k1")
	srv := newJWKSServer(t, key)
	srv.failFirst = 2 // the fetch at start, and the refresh for the first token
	v := newTestVerifier(t, srv.config())
	token := key.sign(t, supabaseClaims(srv.issuer(), uuid.New(), nil))
	if _, err := verifyWithin(t, v, token, 10*time.Second); err == nil {
		t.Fatal("a token verified while the JWKS was down")
	}
	if _, err := verifyWithin(t, v, token, 3*time.Second); err != nil {
		t.Fatalf("the JWKS is back, but Verify still fails: %v", err)
	}
	fetches := srv.fetches.Load()
	other := newECKey(t, "unknown")
	for range 3 {
		_, _ = verifyWithin(t, v, other.sign(t, supabaseClaims(srv.issuer(), uuid.New(), nil)), 100*time.Millisecond)
	}
	if n := srv.fetches.Load() - fetches; n > 1 {
		t.Errorf("three made-up kids after a verified token caused %d fetches, want at most 1", n)
	}
}

func TestVerifyJWKSStaysDown(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "k1")
	srv := newJWKSServer(t, key)
	srv.failFirst = 1 << 30
	v := newTestVerifier(t, srv.config())

	start := time.Now()
	_, err := verifyWithin(t, v, key.sign(t, supabaseClaims(srv.issuer(), uuid.New(), nil)), 30*time.Second)
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify error = %v; want ErrInvalidToken", err)
	}
	if elapsed := time.Since(start); elapsed > unknownKIDWait+time.Second {
		t.Errorf("Verify with the JWKS down took %v; want it bounded by %v", elapsed, unknownKIDWait)
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	t.Parallel()
	keyA, keyB := newECKey(t, "key-a"), newRSAKey(t, "key-b")
	srv := newJWKSServer(t, keyA)
	v := newTestVerifier(t, srv.config())
	userID := uuid.New()

	if _, err := verifyWithin(t, v, keyA.sign(t, supabaseClaims(srv.issuer(), userID, nil)), 10*time.Second); err != nil {
		t.Fatalf("Verify with key A: %v", err)
	}
	srv.setKeys(keyA, keyB)
	got, err := verifyWithin(t, v, keyB.sign(t, supabaseClaims(srv.issuer(), userID, nil)), 10*time.Second)
	if err != nil {
		t.Fatalf("Verify with rotated-in key B: %v", err)
	}
	if got.UserID != userID {
		t.Errorf("UserID = %v; want %v", got.UserID, userID)
	}
	if _, err := verifyWithin(t, v, keyA.sign(t, supabaseClaims(srv.issuer(), userID, nil)), 10*time.Second); err != nil {
		t.Errorf("Verify with key A after rotation: %v", err)
	}
}

func TestVerifyBackgroundRefresh(t *testing.T) {
	t.Parallel()
	keyA, keyB := newECKey(t, "key-a"), newECKey(t, "key-b")
	srv := newJWKSServer(t, keyA)
	cfg := srv.config()
	cfg.RefreshInterval = 50 * time.Millisecond
	fake := clock.NewFake(time.Now())
	cfg.Now = fake.Now
	v := newTestVerifier(t, cfg)
	token := keyA.sign(t, supabaseClaims(srv.issuer(), uuid.New(), nil))
	if _, err := verifyWithin(t, v, token, 10*time.Second); err != nil {
		t.Fatalf("Verify with key A: %v", err)
	}

	// Revoking key A must take effect without any token asking for a
	// refresh. The refresh runs on keyfunc's timer, in real time, so this
	// polls for it, within a deadline. The cache of verified tokens keeps
	// one no longer than a refresh interval, on the verifier's clock: each
	// poll steps the clock past that, so only the refresh is waited for,
	// and a cache that kept tokens longer never lets the revocation show.
	srv.setKeys(keyB)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fake.Advance(cfg.RefreshInterval)
		_, err := verifyWithin(t, v, token, 10*time.Second)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("token signed by a revoked key still verifies after 5s of 50ms refreshes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	const iss = "https://abcd.supabase.co/auth/v1"
	const jwksURL = iss + "/.well-known/jwks.json"
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; empty means success
	}{
		{"OK", Config{Issuer: iss, JWKSURL: jwksURL}, ""},
		{"OKWithSecret", Config{Issuer: iss, JWKSURL: jwksURL, HS256Secret: make([]byte, 32)}, ""},
		{"ErrNoIssuer", Config{JWKSURL: jwksURL}, "Issuer"},
		{"ErrNoJWKSURL", Config{Issuer: iss}, "JWKSURL"},
		{"ErrRelativeJWKSURL", Config{Issuer: iss, JWKSURL: "/auth/v1/jwks"}, "JWKSURL"},
		{"ErrShortSecret", Config{Issuer: iss, JWKSURL: jwksURL, HS256Secret: []byte("short")}, "HS256Secret"},
		{"ErrNegativeLeeway", Config{Issuer: iss, JWKSURL: jwksURL, Leeway: -time.Second}, "Leeway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Cancelled at once: these cases never need the JWKS fetched.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			v, err := NewVerifier(ctx, tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				v.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewVerifier error = %v; want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewStaticVerifier(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "static")
	jwks, err := json.Marshal(map[string]any{"keys": []any{key.jwk}})
	if err != nil {
		t.Fatal(err)
	}
	const iss = "http://127.0.0.1:8080/auth/v1"
	tests := []struct {
		name    string
		jwks    []byte
		wantErr bool
	}{
		{"OK", jwks, false},
		{"ErrNotJSON", []byte("<html>"), true},
		{"ErrNoKeys", []byte(`{"keys":[]}`), true},
		{"ErrBadKey", []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"x"}]}`), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewStaticVerifier(Config{Issuer: iss}, tt.jwks)
			if tt.wantErr {
				if err == nil {
					t.Fatal("NewStaticVerifier succeeded; want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewStaticVerifier: %v", err)
			}
			defer v.Close()
			if _, err := verifyWithin(t, v, key.sign(t, supabaseClaims(iss, uuid.New(), nil)), 5*time.Second); err != nil {
				t.Errorf("Verify: %v", err)
			}
			// Same checks as the JWKS-backed verifier, for example the role.
			bad := key.sign(t, supabaseClaims(iss, uuid.New(), func(c jwt.MapClaims) { c["role"] = "service_role" }))
			if _, err := verifyWithin(t, v, bad, 5*time.Second); !errors.Is(err, errBadRole) {
				t.Errorf("Verify service_role error = %v; want errBadRole", err)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		header    string
		wantToken string
		wantOK    bool
	}{
		{"OK", "Bearer abc.def.ghi", "abc.def.ghi", true},
		{"OKLowercaseScheme", "bearer abc.def.ghi", "abc.def.ghi", true},
		{"ErrMissing", "", "", false},
		{"ErrBasic", "Basic dXNlcjpwYXNz", "", false},
		{"ErrNoToken", "Bearer ", "", false},
		{"ErrNoSpace", "Bearerabc", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			header := make(map[string][]string)
			if tt.header != "" {
				header["Authorization"] = []string{tt.header}
			}
			token, ok := bearerToken(header)
			if token != tt.wantToken || ok != tt.wantOK {
				t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.wantToken, tt.wantOK)
			}
		})
	}
}

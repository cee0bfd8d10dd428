// Package auth verifies Supabase Auth access tokens for the Connect-RPC
// server, carries the verified claims to handlers on the context, and issues
// Supabase-shaped tokens from a local key for development.
//
// Tokens are checked the way Supabase issues them: asymmetric ES256 or RS256
// signatures from the project's JWKS, optionally legacy HS256 with the
// project's JWT secret, issuer "$SUPABASE_URL/auth/v1", audience
// "authenticated", a UUID subject and role "authenticated".
package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

// Defaults for Config's zero values and for the JWKS cache. The unknown-kid
// settings trade how fast a freshly rotated key is picked up against how hard
// a flood of made-up kids can hit Supabase: at most one extra fetch per
// unknownKIDRefreshEvery, and no request waits longer than unknownKIDWait.
const (
	defaultAudience        = "authenticated"
	defaultLeeway          = 30 * time.Second
	defaultRefreshInterval = 10 * time.Minute
	jwksHTTPTimeout        = 10 * time.Second
	unknownKIDRefreshEvery = 15 * time.Second
	unknownKIDWait         = 5 * time.Second
	// unknownKIDRetryUnverified is the unknown-kid refresh rate until a
	// first token has verified: an instance that started while the JWKS
	// was down accepts tokens within about a second of its return instead
	// of up to unknownKIDRefreshEvery later (Cloud Run starts instances on
	// demand, often in exactly such a moment).
	unknownKIDRetryUnverified = time.Second

	// minHS256SecretLen refuses secrets short enough to brute-force; Supabase's
	// own JWT secrets are at least this long.
	minHS256SecretLen = 32
	// maxTokenLen bounds the work an unauthenticated caller can make us do.
	// Supabase access tokens are around 1 KiB.
	maxTokenLen = 16 << 10

	// requiredRole is the only role a user session carries; Supabase's anon
	// and service_role API keys are JWTs too and must never pass as a user.
	requiredRole = "authenticated"
)

// ErrInvalidToken is wrapped by every error Verify returns, so callers can
// treat all verification failures alike; the wrapped cause says why.
var ErrInvalidToken = errors.New("auth: invalid access token")

// Reasons Verify refuses a token beyond what golang-jwt checks. Unexported:
// callers act on ErrInvalidToken, the reason is only for logs and tests.
var (
	errEmptyToken      = errors.New("empty token")
	errTokenTooLong    = errors.New("token too long")
	errBadSubject      = errors.New("sub is not a user UUID")
	errBadRole         = errors.New(`role is not "authenticated"`)
	errHS256Disabled   = errors.New("HS256 token but no HS256 secret configured")
	errKeysUnavailable = errors.New("signing keys not loaded yet")
)

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact "iss" tokens must carry: "$SUPABASE_URL/auth/v1".
	Issuer string
	// JWKSURL is where the signing keys are published:
	// "$SUPABASE_URL/auth/v1/.well-known/jwks.json". Unused by NewStaticVerifier.
	JWKSURL string
	// Audience is the "aud" tokens must contain; "authenticated" if empty.
	Audience string
	// HS256Secret is the legacy Supabase JWT secret. HS256 tokens are refused
	// unless it is set; when set it must be at least 32 bytes.
	HS256Secret []byte
	// Leeway absorbs clock skew on exp, nbf and iat; 30s if zero.
	Leeway time.Duration
	// HTTPClient fetches the JWKS; http.DefaultClient if nil. Each fetch is
	// bounded by its own 10s timeout as well.
	HTTPClient *http.Client
	// RefreshInterval is how often the JWKS is re-fetched in the background;
	// 10m if zero, matching how long Supabase's edge caches it.
	RefreshInterval time.Duration
	// Logger receives JWKS fetch failures; discarded if nil.
	Logger *slog.Logger
	// Now is the clock tokens are judged by: their exp, nbf and iat, and how
	// long a verified token stays cached. time.Now if nil; tests set it to
	// step past an expiry instead of sleeping through it. JWKS refreshes
	// keep to the real clock.
	Now func() time.Time
}

// Claims are the verified facts about the caller that handlers may rely on.
type Claims struct {
	// UserID is the Supabase user id ("sub").
	UserID uuid.UUID
	// Email is the user's email, empty for phone or anonymous users.
	Email string
	// Role is always "authenticated" for a verified token.
	Role string
	// SessionID identifies the Supabase session ("session_id"); may be empty.
	SessionID string
	// IsAnonymous is true for Supabase anonymous sign-ins, which also carry
	// role "authenticated"; handlers decide what such users may do.
	IsAnonymous bool
	// ExpiresAt is when the token stops being valid.
	ExpiresAt time.Time
}

// tokenClaims is the JSON shape of a Supabase access token's payload.
type tokenClaims struct {
	jwt.RegisteredClaims
	Email       string `json:"email,omitempty"`
	Role        string `json:"role"`
	SessionID   string `json:"session_id,omitempty"`
	IsAnonymous bool   `json:"is_anonymous,omitempty"`
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	parser      *jwt.Parser
	hs256Secret []byte
	log         *slog.Logger
	now         func() time.Time

	// ready is closed once keys (and initErr) are set. NewVerifier fetches the
	// JWKS in the background so start-up never waits on Supabase.
	ready   chan struct{}
	keys    keyfunc.Keyfunc
	initErr error

	cancel    context.CancelFunc
	closeOnce sync.Once

	// verified remembers tokens already checked (see cache.go).
	verified *tokenCache

	// unknownKID limits the JWKS fetches tokens with an unknown kid cause:
	// once a second until a token has verified (verifiedOnce), then once
	// every unknownKIDRefreshEvery. Nil for a static verifier.
	unknownKID   *rate.Limiter
	verifiedOnce atomic.Bool
}

// NewVerifier returns a Verifier that fetches signing keys from cfg.JWKSURL.
// It returns at once: the first fetch runs in the background, and a JWKS that
// is down at start-up is retried when a token with an unknown kid arrives
// (rate-limited) and on every RefreshInterval, so tokens verify as soon as it
// is back. Background refresh stops when ctx is cancelled or Close is called.
//
// It returns an error only for an invalid cfg.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.JWKSURL == "" {
		return nil, errors.New("auth: Config.JWKSURL is required")
	}
	if u, err := url.Parse(cfg.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: Config.JWKSURL %q is not an http(s) URL", cfg.JWKSURL)
	}
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	ctx, v.cancel = context.WithCancel(ctx)
	v.unknownKID = rate.NewLimiter(rate.Every(unknownKIDRetryUnverified), 1)

	refreshInterval := cfg.RefreshInterval
	if refreshInterval <= 0 {
		refreshInterval = defaultRefreshInterval
	}
	noErrorOnFirstFetch := true
	override := keyfunc.Override{
		Client:                    cfg.HTTPClient,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noErrorOnFirstFetch,
		RateLimitWaitMax:          unknownKIDWait,
		RefreshInterval:           refreshInterval,
		RefreshUnknownKID:         v.unknownKID,
		RefreshErrorHandlerFunc: func(jwksURL string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				if errors.Is(err, context.Canceled) {
					return // shutting down, or the caller of Verify left
				}
				v.log.WarnContext(ctx, "jwks fetch failed", "url", jwksURL, "err", err)
			}
		},
	}
	// keyfunc makes its first HTTP request before returning, for up to
	// HTTPTimeout; that is why it runs in a goroutine.
	go func() {
		defer close(v.ready)
		v.keys, v.initErr = keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, override)
		if v.initErr != nil {
			v.log.Error("jwks client could not start", "url", cfg.JWKSURL, "err", v.initErr)
		}
	}()
	return v, nil
}

// NewStaticVerifier returns a Verifier whose keys are the fixed JWK Set
// jwksJSON (for example DevKey.JWKS). cfg.JWKSURL, HTTPClient and
// RefreshInterval are ignored; everything else is checked exactly as by
// NewVerifier.
func NewStaticVerifier(cfg Config, jwksJSON []byte) (*Verifier, error) {
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(jwksJSON, &set); err != nil {
		return nil, fmt.Errorf("auth: JWKS is not a JWK Set: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("auth: JWKS has no keys")
	}
	v.keys, err = keyfunc.NewJWKSetJSON(jwksJSON)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	v.cancel = func() {}
	close(v.ready)
	return v, nil
}

// cacheTTLFor keeps verified tokens no longer than one JWKS refresh.
func cacheTTLFor(refresh time.Duration) time.Duration {
	if refresh <= 0 {
		refresh = defaultRefreshInterval
	}
	return refresh
}

// newVerifier checks what both constructors share and builds the parser.
func newVerifier(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth: Config.Issuer is required")
	}
	if n := len(cfg.HS256Secret); n > 0 && n < minHS256SecretLen {
		return nil, fmt.Errorf("auth: Config.HS256Secret is %d bytes; want at least %d", n, minHS256SecretLen)
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: Config.Leeway is negative")
	}
	audience := cfg.Audience
	if audience == "" {
		audience = defaultAudience
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = defaultLeeway
	}
	methods := []string{jwt.SigningMethodES256.Alg(), jwt.SigningMethodRS256.Alg()}
	if len(cfg.HS256Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Verifier{
		parser: jwt.NewParser(
			jwt.WithValidMethods(methods),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(now),
		),
		hs256Secret: bytes.Clone(cfg.HS256Secret),
		log:         log,
		now:         now,
		verified:    newTokenCache(cacheTTLFor(cfg.RefreshInterval)),
		ready:       make(chan struct{}),
	}, nil
}

// Verify checks token's signature and claims and returns the caller's claims.
// Every error wraps ErrInvalidToken. If the JWKS has not been fetched yet,
// Verify waits for it briefly (bounded by ctx and a few seconds); a token
// signed by a key not yet in the cache triggers a rate-limited re-fetch.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	key := tokenKey(token)
	now := v.now()
	if claims, ok := v.verified.get(key, now); ok {
		return claims, nil
	}
	claims, err := v.verify(ctx, token)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if v.unknownKID != nil && !v.verifiedOnce.Load() && v.verifiedOnce.CompareAndSwap(false, true) {
		// The keys are here: from now on a made-up kid costs at most one
		// fetch per unknownKIDRefreshEvery.
		v.unknownKID.SetLimit(rate.Every(unknownKIDRefreshEvery))
	}
	v.verified.put(key, claims, now)
	return claims, nil
}

func (v *Verifier) verify(ctx context.Context, token string) (Claims, error) {
	switch {
	case token == "":
		return Claims{}, errEmptyToken
	case len(token) > maxTokenLen:
		return Claims{}, errTokenTooLong
	}
	if err := v.waitReady(ctx); err != nil {
		return Claims{}, err
	}

	var tc tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.keyfunc(ctx)); err != nil {
		return Claims{}, err
	}

	// Supabase writes subs in canonical form; the length check refuses the
	// braced, urn: and hyphen-less spellings uuid.Parse also accepts.
	userID, err := uuid.Parse(tc.Subject)
	if err != nil || len(tc.Subject) != 36 || userID == uuid.Nil {
		return Claims{}, errBadSubject
	}
	if tc.Role != requiredRole {
		return Claims{}, fmt.Errorf("%w: got %q", errBadRole, tc.Role)
	}
	return Claims{
		UserID:      userID,
		Email:       tc.Email,
		Role:        tc.Role,
		SessionID:   tc.SessionID,
		IsAnonymous: tc.IsAnonymous,
		ExpiresAt:   tc.ExpiresAt.Time, // WithExpirationRequired guarantees non-nil.
	}, nil
}

// keyfunc picks the verification key by algorithm. The HS256 secret is handed
// out only for HS256 and JWKS keys only for the asymmetric algorithms, so a
// token can never be HMAC-checked against a public key's bytes (the classic
// algorithm-confusion attack), nor an ES256 token against the secret.
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	fromJWKS := v.keys.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case jwt.SigningMethodHS256.Alg():
			if len(v.hs256Secret) == 0 {
				return nil, errHS256Disabled
			}
			return v.hs256Secret, nil
		case jwt.SigningMethodES256.Alg(), jwt.SigningMethodRS256.Alg():
			return fromJWKS(t)
		default:
			// The parser's WithValidMethods already refused it; this keeps
			// that true if the method list and this switch ever drift apart.
			return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
		}
	}
}

// waitReady waits for the background JWKS client to exist, for at most
// unknownKIDWait, so requests arriving during start-up wait a little rather
// than fail, but never hang on a JWKS that does not answer.
func (v *Verifier) waitReady(ctx context.Context) error {
	select {
	case <-v.ready:
		return v.initErr
	default:
	}
	timer := time.NewTimer(unknownKIDWait)
	defer timer.Stop()
	select {
	case <-v.ready:
		return v.initErr
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errKeysUnavailable, ctx.Err())
	case <-timer.C:
		return errKeysUnavailable
	}
}

// Close stops background JWKS refresh and waits for an in-flight first fetch
// to give up. Cancelling the ctx given to NewVerifier does the same without
// waiting. Verify keeps working after Close from the cached keys (an unknown
// kid still triggers the rate-limited fetch, under the caller's ctx).
func (v *Verifier) Close() {
	v.closeOnce.Do(v.cancel)
	<-v.ready
}

// bearerToken extracts the token from an "Authorization: Bearer <jwt>"
// header. The scheme is case-insensitive (RFC 7235).
func bearerToken(header http.Header) (string, bool) {
	scheme, token, ok := strings.Cut(header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

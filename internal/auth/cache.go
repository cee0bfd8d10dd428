package auth

import (
	"crypto/sha256"
	"net/http"
	"sync"
	"time"
)

// A client sends the same access token with every call for up to an hour,
// and checking an ES256 signature costs far more than the rest of a small
// RPC (see BENCHMARKS.md). The verifier therefore remembers tokens it has
// verified, keyed by a hash of the whole token (signature included, so no
// other token can match), until the token expires or for the cache's ttl at
// most: the JWKS refresh interval, capped at maxCacheTTL, so a token signed
// by a key that has been revoked stops working within two refreshes.
const (
	maxCacheTTL  = 5 * time.Minute
	cacheEntries = 50_000
)

// tokenKey is the cache's key for token. The token is hashed from a pooled
// copy: converting it in place would allocate, access tokens being longer
// than the 32 bytes a conversion finds room for on the stack.
func tokenKey(token string) [sha256.Size]byte {
	bp := tokenBuffers.Get().(*[]byte)
	b := append((*bp)[:0], token...)
	key := sha256.Sum256(b)
	if cap(b) <= maxPooledToken {
		*bp = b
		tokenBuffers.Put(bp)
	}
	return key
}

// maxPooledToken bounds the copies tokenKey keeps for reuse.
const maxPooledToken = 16 << 10

var tokenBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}

type cacheEntry struct {
	claims Claims
	until  time.Time
}

type tokenCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[[sha256.Size]byte]cacheEntry
}

func newTokenCache(ttl time.Duration) *tokenCache {
	return &tokenCache{ttl: min(ttl, maxCacheTTL), entries: make(map[[sha256.Size]byte]cacheEntry)}
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (Claims, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !now.Before(e.until) {
		return Claims{}, false
	}
	return e.claims, true
}

func (c *tokenCache) put(key [sha256.Size]byte, claims Claims, now time.Time) {
	until := now.Add(c.ttl)
	if claims.ExpiresAt.Before(until) {
		until = claims.ExpiresAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= cacheEntries {
		// Drop what has expired; if that is not enough, start afresh: a
		// miss only costs one signature check.
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= cacheEntries {
			clear(c.entries)
		}
	}
	c.entries[key] = cacheEntry{claims: claims, until: until}
}

// Recognizes reports whether the request carries a bearer token this
// verifier has already verified and that is still valid: a cheap check,
// with no signature work, that callers use to tell known clients from a
// flood of bad tokens.
func (v *Verifier) Recognizes(header http.Header) bool {
	token, ok := bearerToken(header)
	if !ok {
		return false
	}
	_, ok = v.verified.get(tokenKey(token), v.now())
	return ok
}

package qstash

import (
	"crypto/rand"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenLifetime is how long a QStash signature stays valid (its exp minus its nbf).
const TokenLifetime = 5 * time.Minute

// Signer makes Upstash-Signature tokens exactly as QStash does. Parley itself never
// signs deliveries; the local stand-in (package qstashtest) and the cross-check
// against the official Receiver do.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer that signs with key, a QStash signing key.
func NewSigner(key string) *Signer {
	return &Signer{key: []byte(key)}
}

// Sign returns the token QStash would send with a delivery of body to url now.
func (s *Signer) Sign(body []byte, url string) (string, error) {
	return s.SignAt(body, url, time.Now())
}

// SignAt is Sign at the instant now, for tests of expiry and not-before.
//
// The header is {"alg":"HS256","typ":"JWT"}; the claims are iss "Upstash", sub url,
// iat and nbf now, exp now+5min (whole seconds), a random jti and body, the padded
// base64url SHA-256 of the body.
func (s *Signer) SignAt(body []byte, url string, now time.Time) (string, error) {
	now = now.Truncate(time.Second)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   url,
			ExpiresAt: jwt.NewNumericDate(now.Add(TokenLifetime)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        "jwt_" + rand.Text(),
		},
		Body: BodyHash(body),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
}

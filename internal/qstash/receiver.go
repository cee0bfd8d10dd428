package qstash

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the iss claim of every token QStash signs.
const Issuer = "Upstash"

// Reasons a signature is refused. Verify wraps exactly one of them, so callers can
// log which check failed with errors.Is; none of the messages carries a key, and the
// wrapped detail only repeats what the token itself said.
var (
	ErrSignatureMissing     = errors.New("qstash: signature missing")
	ErrSignatureMalformed   = errors.New("qstash: signature malformed")
	ErrSignatureInvalid     = errors.New("qstash: bad signature")
	ErrSignatureExpired     = errors.New("qstash: signature expired")
	ErrSignatureNotYetValid = errors.New("qstash: signature not yet valid")
	ErrWrongIssuer          = errors.New("qstash: wrong issuer")
	ErrWrongURL             = errors.New("qstash: signature is for another url")
	ErrBodyMismatch         = errors.New("qstash: body does not match its signature")
)

// claims is the payload of an Upstash-Signature token.
type claims struct {
	jwt.RegisteredClaims
	// Body is base64url(sha256(raw body)); QStash sends it padded.
	Body string `json:"body"`
}

// Receiver verifies Upstash-Signature headers. It is safe for concurrent use.
type Receiver struct {
	keys   [2][]byte
	now    func() time.Time
	leeway time.Duration
}

// ReceiverOption configures a Receiver.
type ReceiverOption func(*Receiver)

// WithClock makes the Receiver read the time from now, so tests can check expiry
// without waiting.
func WithClock(now func() time.Time) ReceiverOption {
	return func(r *Receiver) { r.now = now }
}

// WithLeeway accepts tokens up to d past exp or before nbf, for hosts whose clock
// drifts from QStash's. The default is none, as in @upstash/qstash's Receiver (its
// clockTolerance is unset unless the caller passes one); tokens live five minutes, so
// only nbf (set to the signing instant) is sensitive to skew.
func WithLeeway(d time.Duration) ReceiverOption {
	return func(r *Receiver) { r.leeway = d }
}

// NewReceiver returns a Receiver that accepts tokens signed with currentKey or
// nextKey, the two signing keys shown in the QStash console.
func NewReceiver(currentKey, nextKey string, opts ...ReceiverOption) *Receiver {
	r := &Receiver{keys: [2][]byte{[]byte(currentKey), []byte(nextKey)}, now: time.Now}
	for _, opt := range opts {
		opt(r)
	}
	return r
}

// Verify checks that signature (the Upstash-Signature header) was made by QStash for
// a delivery of body to url. url must be exactly the destination the message was
// published to: QStash puts it in the sub claim and no normalisation is done.
//
// It returns nil or an error wrapping one of ErrSignatureMissing,
// ErrSignatureMalformed, ErrSignatureInvalid, ErrSignatureExpired,
// ErrSignatureNotYetValid, ErrWrongIssuer, ErrWrongURL or ErrBodyMismatch.
func (r *Receiver) Verify(signature string, body []byte, url string) error {
	_, err := r.verify(signature, body, url)
	return err
}

// verify is Verify that also returns the token's claims, for the handler's replay
// bookkeeping.
func (r *Receiver) verify(signature string, body []byte, url string) (*claims, error) {
	if signature == "" {
		return nil, ErrSignatureMissing
	}
	parser := jwt.NewParser(
		// Only HS256: QStash signs nothing else, and pinning it refuses "none" and
		// any attempt to have an HMAC key read as a public key.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithTimeFunc(r.now),
		jwt.WithLeeway(r.leeway),
	)
	var c *claims
	var err error
	// The current key first, then the next: during a rotation QStash may already sign
	// with the key that was "next". Only a signature mismatch moves on to the next key;
	// a token whose signature matched but whose claims fail is refused for that reason.
	for _, key := range r.keys {
		if len(key) == 0 {
			err = jwt.ErrTokenSignatureInvalid
			continue
		}
		c = &claims{}
		_, err = parser.ParseWithClaims(signature, c, func(*jwt.Token) (any, error) { return key, nil })
		if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			break
		}
	}
	if err != nil {
		return nil, classify(err)
	}
	if c.Issuer != Issuer {
		return nil, ErrWrongIssuer
	}
	if c.Subject != url {
		return nil, ErrWrongURL
	}
	if c.Body == "" {
		return nil, fmt.Errorf("%w: no body claim", ErrSignatureMalformed)
	}
	// Compare without '=' padding, as @upstash/qstash does: QStash sends the padded
	// form, other signers may not.
	want := strings.TrimRight(c.Body, "=")
	got := strings.TrimRight(BodyHash(body), "=")
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return nil, ErrBodyMismatch
	}
	return c, nil
}

// classify maps golang-jwt's errors onto this package's reasons. The order matters:
// golang-jwt joins several claim errors into one.
func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %v", ErrSignatureMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrSignatureInvalid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: %v", ErrSignatureMalformed, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrSignatureExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrSignatureNotYetValid
	default:
		return fmt.Errorf("%w: %v", ErrSignatureMalformed, err)
	}
}

// BodyHash returns the body claim QStash puts in a token for body:
// base64url(sha256(body)) with '=' padding.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return base64.URLEncoding.EncodeToString(sum[:])
}

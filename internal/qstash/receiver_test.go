package qstash_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleyhq/parley/internal/qstash"
)

const (
	currentKey = "sig_current_7kxXD6UBAk7DqU6hzuHMDdXF"
	nextKey    = "sig_next_67kxXD6UBAk7DqU6hzuHMDdXFXfP"
	endpoint   = "https://parley.example/internal/qstash/step"
)

// signedAt is the instant the tests' tokens are made.
var signedAt = time.Unix(1_700_000_000, 0)

// at is a clock stopped at t.
func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// craft signs arbitrary claims, for tokens QStash would never send.
func craft(tb testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// qstashClaims are the claims QStash sends for body to endpoint at signedAt.
func qstashClaims(body []byte) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":  "Upstash",
		"sub":  endpoint,
		"exp":  signedAt.Add(5 * time.Minute).Unix(),
		"nbf":  signedAt.Unix(),
		"iat":  signedAt.Unix(),
		"jti":  "jwt_test",
		"body": qstash.BodyHash(body),
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"step":"run","id":42}`)
	sign := func(key string) string {
		s, err := qstash.NewSigner(key).SignAt(body, endpoint, signedAt)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(edit func(jwt.MapClaims)) string {
		c := qstashClaims(body)
		edit(c)
		return craft(t, jwt.SigningMethodHS256, []byte(currentKey), c)
	}
	tests := []struct {
		name      string
		signature string
		body      []byte
		url       string
		now       time.Time
		opts      []qstash.ReceiverOption
		want      error
	}{
		{name: "OK", signature: sign(currentKey)},
		{name: "OKNextKey", signature: sign(nextKey)},
		{name: "OKLastSecond", signature: sign(currentKey), now: signedAt.Add(5*time.Minute - time.Second)},
		{name: "OKUnpaddedBodyHash", signature: with(func(c jwt.MapClaims) {
			c["body"] = strings.TrimRight(c["body"].(string), "=")
		})},
		{name: "OKLeeway", signature: sign(currentKey), now: signedAt.Add(-time.Second), opts: []qstash.ReceiverOption{qstash.WithLeeway(2 * time.Second)}},
		{name: "ErrWrongKey", signature: sign("sig_someone_else"), want: qstash.ErrSignatureInvalid},
		{name: "ErrExpired", signature: sign(currentKey), now: signedAt.Add(5*time.Minute + time.Second), want: qstash.ErrSignatureExpired},
		// exp itself is already too late, for golang-jwt as for jose (exp <= now).
		{name: "ErrExpiredAtExp", signature: sign(currentKey), now: signedAt.Add(5 * time.Minute), want: qstash.ErrSignatureExpired},
		{name: "ErrNotYetValid", signature: sign(currentKey), now: signedAt.Add(-time.Second), want: qstash.ErrSignatureNotYetValid},
		{name: "ErrBodyTampered", signature: sign(currentKey), body: []byte(`{"step":"run","id":43}`), want: qstash.ErrBodyMismatch},
		{name: "ErrWrongURL", signature: sign(currentKey), url: "https://parley.example/internal/qstash/other", want: qstash.ErrWrongURL},
		{name: "ErrURLNotExact", signature: sign(currentKey), url: endpoint + "/", want: qstash.ErrWrongURL},
		{name: "ErrMissing", signature: "", want: qstash.ErrSignatureMissing},
		{name: "ErrMalformed", signature: "not.a.jwt", want: qstash.ErrSignatureMalformed},
		{name: "ErrWrongIssuer", signature: with(func(c jwt.MapClaims) { c["iss"] = "Evil" }), want: qstash.ErrWrongIssuer},
		{name: "ErrNoExp", signature: with(func(c jwt.MapClaims) { delete(c, "exp") }), want: qstash.ErrSignatureMalformed},
		{name: "ErrNoNbf", signature: with(func(c jwt.MapClaims) { delete(c, "nbf") }), want: qstash.ErrSignatureMalformed},
		{name: "ErrNoBodyClaim", signature: with(func(c jwt.MapClaims) { delete(c, "body") }), want: qstash.ErrSignatureMalformed},
		{name: "ErrAlgNone", signature: craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, qstashClaims(body)), want: qstash.ErrSignatureInvalid},
		{name: "ErrAlgHS512", signature: craft(t, jwt.SigningMethodHS512, []byte(currentKey), qstashClaims(body)), want: qstash.ErrSignatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now, b, url := tt.now, tt.body, tt.url
			if now.IsZero() {
				now = signedAt.Add(time.Minute)
			}
			if b == nil {
				b = body
			}
			if url == "" {
				url = endpoint
			}
			r := qstash.NewReceiver(currentKey, nextKey, append([]qstash.ReceiverOption{qstash.WithClock(at(now))}, tt.opts...)...)
			err := r.Verify(tt.signature, b, url)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), currentKey) || strings.Contains(err.Error(), nextKey)) {
				t.Fatalf("error %q names a key", err)
			}
		})
	}
}

func TestSignerMatchesQStashFormat(t *testing.T) {
	t.Parallel()
	body := []byte("hello")
	signature, err := qstash.NewSigner(currentKey).SignAt(body, endpoint, signedAt.Add(400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var got jwt.MapClaims
	token, err := jwt.ParseWithClaims(signature, &got, func(*jwt.Token) (any, error) { return []byte(currentKey), nil },
		jwt.WithTimeFunc(at(signedAt)))
	if err != nil {
		t.Fatal(err)
	}
	if token.Header["alg"] != "HS256" || token.Header["typ"] != "JWT" || len(token.Header) != 2 {
		t.Errorf("header = %v, want exactly alg HS256 and typ JWT", token.Header)
	}
	jti, _ := got["jti"].(string)
	if !strings.HasPrefix(jti, "jwt_") || len(jti) < 20 {
		t.Errorf("jti = %q, want a random jwt_ id", jti)
	}
	delete(got, "jti")
	want := jwt.MapClaims{
		"iss": "Upstash", "sub": endpoint,
		"exp": float64(signedAt.Unix() + 300), "nbf": float64(signedAt.Unix()), "iat": float64(signedAt.Unix()),
		// sha256("hello"), base64url with its padding, as QStash's Go example computes it.
		"body": "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
	}
	if len(got) != len(want) {
		t.Errorf("claims = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("claim %s = %v, want %v", k, got[k], v)
		}
	}
}

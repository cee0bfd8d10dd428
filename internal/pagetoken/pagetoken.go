// Package pagetoken makes the opaque page tokens of the artifact and search
// lists: a keyset cursor bound to the query it came from (the kind of list
// and its scope: the user, an artifact, a query and its filters). A
// checksum over cursor and binding detects a token that was altered, cut,
// or replayed against another list. It is not a secret MAC: every query
// still filters by the caller's user id, so a forged token can only move
// the caller around their own data, never into someone else's.
//
// Layout: version(1) | cursor | checksum(8), base64url.
package pagetoken

import (
	"crypto/sha256"
	"encoding/base64"

	"github.com/parleyhq/parley/internal/apperr"
)

const version = 1

func sum(kind string, scope, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("parley.page.v1\x00" + kind + "\x00"))
	h.Write(scope)
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)[:8]
}

// Encode returns the token of cursor for a list of kind within scope.
func Encode(kind string, scope, cursor []byte) string {
	body := make([]byte, 0, 1+len(cursor)+8)
	body = append(body, version)
	body = append(body, cursor...)
	body = append(body, sum(kind, scope, body)...)
	return base64.RawURLEncoding.EncodeToString(body)
}

// Decode returns the cursor of token, which must have been made by Encode
// for the same kind and scope with a cursor of size bytes. An empty token
// is the first page: nil and no error. Anything else answers apperr
// Invalid naming page_token.
func Decode(kind string, scope []byte, token string, size int) ([]byte, error) {
	if token == "" {
		return nil, nil
	}
	invalid := apperr.InvalidField("page_token", "is not a page token returned by this list for this request; start again from the first page")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	// The decoder skips line breaks and tolerates stray trailing bits: only
	// the one spelling Encode writes is a token (FuzzDecode found this).
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != token || len(raw) != 1+size+8 || raw[0] != version {
		return nil, invalid
	}
	body, got := raw[:1+size], raw[1+size:]
	if string(got) != string(sum(kind, scope, body)) {
		return nil, invalid
	}
	return body[1:], nil
}

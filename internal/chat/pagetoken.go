package chat

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Page tokens are opaque to clients: a keyset cursor bound to the query it
// came from (the kind of list and its scope: the user, or the conversation).
// A checksum over cursor and binding detects a token that was altered, cut,
// or replayed against another query. It is not a secret MAC: every query
// still filters by the caller's user id, so a forged token can only move
// the caller around their own data, never into someone else's.
//
// Layout: version(1) | micros(8) | id(16) | checksum(8), base64url.
const pageTokenVersion = 1

func pageTokenSum(kind string, scope uuid.UUID, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("parley.page.v1\x00" + kind + "\x00"))
	h.Write(scope[:])
	h.Write(body)
	return h.Sum(nil)[:8]
}

func encodePageToken(kind string, scope uuid.UUID, c Cursor) string {
	body := make([]byte, 0, 33)
	body = append(body, pageTokenVersion)
	body = binary.BigEndian.AppendUint64(body, uint64(c.Time.UnixMicro()))
	body = append(body, c.ID[:]...)
	body = append(body, pageTokenSum(kind, scope, body)...)
	return base64.RawURLEncoding.EncodeToString(body)
}

func decodePageToken(kind string, scope uuid.UUID, token string) (*Cursor, error) {
	if token == "" {
		return nil, nil
	}
	invalid := apperr.InvalidField("page_token", "is not a page token returned by this list; start again from the first page")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 33 || raw[0] != pageTokenVersion {
		return nil, invalid
	}
	body, sum := raw[:25], raw[25:]
	want := pageTokenSum(kind, scope, body)
	if string(sum) != string(want) {
		return nil, invalid
	}
	c := &Cursor{Time: time.UnixMicro(int64(binary.BigEndian.Uint64(body[1:9]))).UTC()}
	copy(c.ID[:], body[9:25])
	return c, nil
}

// page validates a page size and token for a list of kind scoped to scope.
func page(kind string, scope uuid.UUID, size int, token string) (Page, error) {
	switch {
	case size == 0:
		size = DefaultPageSize
	case size < 0 || size > MaxPageSize:
		return Page{}, apperr.InvalidField("page_size", "must be between 1 and %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, size)
	}
	after, err := decodePageToken(kind, scope, token)
	if err != nil {
		return Page{}, err
	}
	return Page{Size: size, After: after}, nil
}

// trimPage cuts items, fetched as one more than size, to a page, and
// returns the next page's token ("" on the last page), whose cursor is the
// last item kept.
func trimPage[T any](items []T, size int, kind string, scope uuid.UUID, cursor func(T) Cursor) ([]T, string) {
	if len(items) <= size {
		return items, ""
	}
	items = items[:size]
	return items, encodePageToken(kind, scope, cursor(items[len(items)-1]))
}

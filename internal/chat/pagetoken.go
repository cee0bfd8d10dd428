package chat

import (
	"encoding/binary"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/pagetoken"
)

// Page tokens are opaque to clients: a keyset cursor (the sort time in
// microseconds and the id of a page's last row) made by internal/pagetoken,
// bound to the list it came from (its kind and scope: the user, or the
// conversation or branch). See pagetoken for why a checksum, not a secret
// MAC, is enough.

// cursorBytes is the size of an encoded Cursor.
const cursorBytes = 8 + 16

func encodePageToken(kind string, scope uuid.UUID, c Cursor) string {
	cursor := make([]byte, 0, cursorBytes)
	cursor = binary.BigEndian.AppendUint64(cursor, uint64(c.Time.UnixMicro()))
	cursor = append(cursor, c.ID[:]...)
	return pagetoken.Encode(kind, scope[:], cursor)
}

func decodePageToken(kind string, scope uuid.UUID, token string) (*Cursor, error) {
	cursor, err := pagetoken.Decode(kind, scope[:], token, cursorBytes)
	if err != nil || cursor == nil {
		return nil, err
	}
	c := &Cursor{Time: time.UnixMicro(int64(binary.BigEndian.Uint64(cursor[:8]))).UTC()}
	copy(c.ID[:], cursor[8:])
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

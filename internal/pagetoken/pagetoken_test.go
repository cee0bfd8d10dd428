package pagetoken

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/parleyhq/parley/internal/apperr"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	cursor := []byte{1, 2, 3, 4, 5}
	token := Encode("artifacts", []byte("user-a"), cursor)
	got, err := Decode("artifacts", []byte("user-a"), token, len(cursor))
	if err != nil || !bytes.Equal(got, cursor) {
		t.Fatalf("Decode = %v, %v; want %v", got, err, cursor)
	}
	if got, err := Decode("artifacts", []byte("user-a"), "", len(cursor)); got != nil || err != nil {
		t.Errorf("empty token: %v, %v; want the first page", got, err)
	}
}

// TestRefused: a token altered, cut, or replayed against another list or
// scope is refused as an invalid page_token.
func TestRefused(t *testing.T) {
	t.Parallel()
	cursor := []byte{9, 9, 9, 9}
	token := Encode("search", []byte("scope"), cursor)
	raw, _ := base64.RawURLEncoding.DecodeString(token)
	flipped := bytes.Clone(raw)
	flipped[2] ^= 1
	tests := []struct {
		name, kind, scope, token string
		size                     int
	}{
		{"ErrOtherKind", "artifacts", "scope", token, 4},
		{"ErrOtherScope", "search", "other", token, 4},
		{"ErrOtherSize", "search", "scope", token, 5},
		{"ErrAltered", "search", "scope", base64.RawURLEncoding.EncodeToString(flipped), 4},
		{"ErrCut", "search", "scope", token[:len(token)-2], 4},
		{"ErrNotBase64", "search", "scope", "***", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.kind, []byte(tt.scope), tt.token, tt.size)
			var e *apperr.Error
			if apperr.CodeOf(err) != apperr.Invalid || !errors.As(err, &e) || e.Field != "page_token" {
				t.Errorf("err = %v, want invalid page_token", err)
			}
		})
	}
}

package pagetoken

import (
	"bytes"
	"testing"
)

// FuzzDecode: Decode never panics, accepts only tokens Encode makes for the
// same list and scope (a decoded token re-encodes to itself), and gives
// back the cursor Encode was given.
func FuzzDecode(f *testing.F) {
	scope := []byte("user-1")
	f.Add(Encode("conversations", scope, make([]byte, 24)), []byte{1, 2, 3})
	f.Add("", []byte(nil))
	f.Add("AAAA", []byte("x"))
	f.Add("not base64 !", []byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, token string, cursor []byte) {
		got, err := Decode("conversations", scope, token, 24)
		if err == nil && token != "" && Encode("conversations", scope, got) != token {
			t.Fatalf("Decode accepted %q, which Encode never makes", token)
		}
		// Another list's or another user's token is refused.
		if _, err := Decode("artifacts", scope, token, 24); err == nil && token != "" {
			t.Fatalf("a token of another list was accepted: %q", token)
		}
		if _, err := Decode("conversations", []byte("user-2"), token, 24); err == nil && token != "" {
			t.Fatalf("a token of another scope was accepted: %q", token)
		}
		// Round trip of any cursor.
		enc := Encode("artifacts", scope, cursor)
		back, err := Decode("artifacts", scope, enc, len(cursor))
		if err != nil || !bytes.Equal(back, cursor) {
			t.Fatalf("round trip of %x: %x, %v", cursor, back, err)
		}
	})
}

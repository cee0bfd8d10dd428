package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzVerify: whatever token arrives, Verify answers in bounded time
// without panicking, and the only identity it ever grants is the one a
// token signed with the project's key names: no mutation of a valid
// token, and nothing else, verifies as another user.
func FuzzVerify(f *testing.F) {
	key, err := LoadOrCreateDevKey(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	const iss = "http://fuzz.localhost/auth/v1"
	v, err := NewStaticVerifier(Config{Issuer: iss}, key.JWKS())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	user := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	valid, err := key.Sign(iss, user, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-2])
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("")
	f.Add(strings.Repeat("a.", 5000))
	f.Fuzz(func(t *testing.T, token string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		claims, err := v.Verify(ctx, token)
		if err != nil {
			return
		}
		if claims.UserID != user {
			t.Fatalf("token %q verified as user %v; only %v was ever signed", token, claims.UserID, user)
		}
	})
}

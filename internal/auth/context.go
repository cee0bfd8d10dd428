package auth

import (
	"context"

	"github.com/google/uuid"
)

// claimsKey is unexported so only this package can put claims on a context:
// a handler that finds them knows the interceptor verified them.
type claimsKey struct{}

// WithClaims returns a copy of ctx carrying c. The interceptor calls it after
// a token verifies; tests call it to stand in for the interceptor.
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the verified claims on ctx, and false on a context that
// did not pass through the interceptor (or passed as a public procedure).
func ClaimsFrom(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// UserID returns the verified caller's user id. Handlers of non-public
// procedures can rely on ok being true; treat false as unauthenticated.
func UserID(ctx context.Context) (uuid.UUID, bool) {
	c, ok := ClaimsFrom(ctx)
	return c.UserID, ok
}

// Package plan defines what each subscription plan allows: how fast a user
// may call (a multiplier on the rate limits), how many tokens a month, and
// which models. Every signed-in user is on Free until billing lets them buy
// Pro; anonymous sign-ins (Supabase's is_anonymous) are on Anonymous, whose
// smaller limits keep a script that signs in anonymously again and again
// from getting a full free quota each time.
package plan

import (
	"context"
	"slices"

	"github.com/google/uuid"
)

// Names of the plans.
const (
	Anonymous = "anonymous"
	Free      = "free"
	Pro       = "pro"
)

// Plan is what a subscription allows.
type Plan struct {
	Name string
	// RateMultiplier scales every rate limit (1 for free).
	RateMultiplier float64
	// MonthlyTokens is the token quota per calendar month (UTC); 0 means
	// unlimited.
	MonthlyTokens int64
	// Models lists the models the plan may use; empty allows every model
	// the server offers.
	Models []string
}

// AllowsModel reports whether the plan may use model.
func (p Plan) AllowsModel(model string) bool {
	return len(p.Models) == 0 || slices.Contains(p.Models, model)
}

// Resolver tells which plan a user is on.
type Resolver interface {
	PlanOf(ctx context.Context, userID uuid.UUID) (Plan, error)
}

// Catalog holds the plans the server sells.
type Catalog struct {
	Anonymous Plan
	Free      Plan
	Pro       Plan
}

// PlanOf implements Resolver: until billing exists every user is on Free,
// and anonymous callers (see WithCaller) on Anonymous.
func (c Catalog) PlanOf(ctx context.Context, _ uuid.UUID) (Plan, error) {
	if CallerFrom(ctx).Anonymous {
		return c.Anonymous, nil
	}
	return c.Free, nil
}

// Caller is what the request's verified token says about the user that
// plans depend on.
type Caller struct {
	// Anonymous is true for an anonymous sign-in.
	Anonymous bool
}

type callerKey struct{}

// WithCaller returns a copy of ctx carrying c; the server sets it from the
// verified token before any limit is checked.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller on ctx (the zero Caller when none was set).
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

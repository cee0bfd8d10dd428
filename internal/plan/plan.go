// Package plan defines what each subscription plan allows: how fast a user
// may call (a multiplier on the rate limits), how many tokens a month, and
// which models. Every user is on Free until billing lets them buy Pro.
package plan

import (
	"context"
	"slices"

	"github.com/google/uuid"
)

// Names of the plans.
const (
	Free = "free"
	Pro  = "pro"
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
	Free Plan
	Pro  Plan
}

// PlanOf implements Resolver: until billing exists every user is on Free.
func (c Catalog) PlanOf(context.Context, uuid.UUID) (Plan, error) { return c.Free, nil }

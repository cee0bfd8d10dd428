// Package billing holds Parley's billing rules: which plan a user is on
// (read from the database on every request, so a change applies at once on
// every instance), starting a Stripe Checkout for a paid plan, opening
// Stripe's billing portal, and applying what Stripe's webhook events say,
// each event once and never an older state over a newer one.
//
// It declares the Store and the Stripe API it needs; internal/store and
// internal/stripeapi implement them. It knows nothing of SQL, HTTP,
// protobuf or stripe-go.
package billing

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/plan"
)

// Stripe subscription statuses Parley tells apart (Stripe's own words).
const (
	StatusActive            = "active"
	StatusTrialing          = "trialing"
	StatusPastDue           = "past_due"
	StatusCanceled          = "canceled"
	StatusUnpaid            = "unpaid"
	StatusIncomplete        = "incomplete"
	StatusIncompleteExpired = "incomplete_expired"
	StatusPaused            = "paused"
)

// Subscription is a user's billing state as Stripe last told it.
type Subscription struct {
	UserID uuid.UUID
	// Plan is plan.Free or plan.Pro: what the user may use now.
	Plan string
	// Status is Stripe's subscription status ("" before the first one).
	Status            string
	CustomerID        string // "" until the first checkout
	SubscriptionID    string // "" until Stripe reports one
	CurrentPeriodEnd  time.Time
	CancelAtPeriodEnd bool
	// PastDueSince is when a payment first failed in the current period
	// (zero when none has).
	PastDueSince time.Time
	// StateTime is the time of the Stripe event the state comes from.
	StateTime  time.Time
	UpdateTime time.Time
}

// Live reports whether the subscription still bills (or is retrying a
// payment): its plan holds, and canceling it means telling Stripe.
func (s Subscription) Live() bool {
	return s.SubscriptionID != "" && keepsPlan(s.Status)
}

// keepsPlan reports whether a subscription in status pays for its plan:
// active, trialing, or past due while Stripe retries the payment.
func keepsPlan(status string) bool {
	switch status {
	case StatusActive, StatusTrialing, StatusPastDue:
		return true
	}
	return false
}

// Store keeps subscriptions and the Stripe events handled.
type Store interface {
	// PlanName returns the user's plan name, plan.Free when the user has
	// no subscription row. Errors: apperr.Unavailable and the like.
	PlanName(ctx context.Context, userID uuid.UUID) (string, error)
	// Subscription returns the user's subscription; apperr.NotFound when
	// the user never started a checkout.
	Subscription(ctx context.Context, userID uuid.UUID) (Subscription, error)
	// SaveCustomer remembers customerID as the user's Stripe customer
	// unless one is remembered already, and returns the one remembered.
	SaveCustomer(ctx context.Context, userID uuid.UUID, customerID string) (string, error)
	// ApplyEvent records the event as handled and applies its change in
	// one transaction. It reports Duplicate (and changes nothing) for an
	// event handled before, Stale when the change did not apply (a newer
	// state is saved, or the customer is not known).
	ApplyEvent(ctx context.Context, e EventRecord, c Change) (Outcome, error)
}

// EventRecord names a Stripe event for the Store.
type EventRecord struct {
	ID   string
	Type string
	// Time is the event's creation time, Stripe's order of its states.
	Time time.Time
}

// Change is what one event does to a subscription; exactly one field is
// set.
type Change struct {
	// Link ties a checkout's customer and subscription to its user.
	Link *Link
	// Set replaces the customer's subscription state.
	Set *SubscriptionUpdate
	// PastDue marks the customer's subscription as retrying a payment.
	PastDue *PastDue
}

// Link ties a Stripe customer (and subscription) to a user.
type Link struct {
	UserID         uuid.UUID
	CustomerID     string
	SubscriptionID string
}

// SubscriptionUpdate is a customer's subscription as an event reports it,
// with the plan it pays for.
type SubscriptionUpdate struct {
	CustomerID        string
	SubscriptionID    string
	Plan              string
	Status            string
	CurrentPeriodEnd  time.Time
	CancelAtPeriodEnd bool
}

// PastDue is a failed payment of a customer's subscription.
type PastDue struct {
	CustomerID     string
	SubscriptionID string
}

// Outcome says what ApplyEvent did.
type Outcome string

// The outcomes of ApplyEvent, and Ignored for events nothing handles.
const (
	Applied   Outcome = "applied"
	Duplicate Outcome = "duplicate"
	Stale     Outcome = "stale"
	Ignored   Outcome = "ignored"
)

// Plans resolves a user's plan from the Store: anonymous callers are on
// the catalog's Anonymous plan without a query, everyone else on the plan
// their subscription row names, Free without one. It caches nothing, so
// a webhook's change applies to the next request on every instance; the
// cost is one primary-key lookup per call (see BenchmarkPlanOf in
// internal/store).
type Plans struct {
	Catalog plan.Catalog
	Store   interface {
		PlanName(ctx context.Context, userID uuid.UUID) (string, error)
	}
}

var _ plan.Resolver = Plans{}

// PlanOf implements plan.Resolver.
func (p Plans) PlanOf(ctx context.Context, userID uuid.UUID) (plan.Plan, error) {
	if plan.CallerFrom(ctx).Anonymous {
		return p.Catalog.Anonymous, nil
	}
	name, err := p.Store.PlanName(ctx, userID)
	if err != nil {
		return plan.Plan{}, err
	}
	if name == plan.Pro {
		return p.Catalog.Pro, nil
	}
	return p.Catalog.Free, nil
}

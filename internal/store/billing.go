package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

var _ billing.Store = (*Store)(nil)

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// PlanName implements billing.Store: one primary-key lookup.
func (s *Store) PlanName(ctx context.Context, userID uuid.UUID) (string, error) {
	name, err := s.q.GetPlan(ctx, userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return plan.Free, nil
	}
	if err != nil {
		return "", interpretError(err, "plan")
	}
	return name, nil
}

// Subscription implements billing.Store.
func (s *Store) Subscription(ctx context.Context, userID uuid.UUID) (billing.Subscription, error) {
	r, err := s.q.GetSubscription(ctx, userID)
	if err != nil {
		return billing.Subscription{}, interpretError(err, "subscription")
	}
	return billing.Subscription{
		UserID:            r.UserID,
		Plan:              r.Plan,
		Status:            r.Status,
		CustomerID:        deref(r.StripeCustomerID),
		SubscriptionID:    deref(r.StripeSubscriptionID),
		CurrentPeriodEnd:  deref(r.CurrentPeriodEnd),
		CancelAtPeriodEnd: r.CancelAtPeriodEnd,
		PastDueSince:      deref(r.PastDueSince),
		StateTime:         deref(r.StateTime),
		UpdateTime:        r.UpdateTime,
	}, nil
}

// SaveCustomer implements billing.Store in one statement, so two
// checkouts racing to save a customer both get the first one saved.
func (s *Store) SaveCustomer(ctx context.Context, userID uuid.UUID, customerID string) (string, error) {
	saved, err := s.q.SaveCustomer(ctx, sqlcgen.SaveCustomerParams{UserID: userID, StripeCustomerID: &customerID})
	if err != nil {
		return "", interpretError(err, "customer")
	}
	return saved, nil
}

// ApplyEvent implements billing.Store: the event's id and its change
// commit together, so a redelivery after a crash applies it once.
func (s *Store) ApplyEvent(ctx context.Context, e billing.EventRecord, c billing.Change) (billing.Outcome, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", interpretError(err, "stripe event")
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := s.q.WithTx(tx)
	n, err := q.InsertStripeEvent(ctx, sqlcgen.InsertStripeEventParams{ID: e.ID, Type: e.Type})
	if err != nil {
		return "", interpretError(err, "stripe event")
	}
	if n == 0 {
		return billing.Duplicate, nil
	}
	switch {
	case c.Link != nil:
		n, err = q.LinkCustomer(ctx, sqlcgen.LinkCustomerParams{
			UserID: c.Link.UserID, StripeCustomerID: &c.Link.CustomerID, StripeSubscriptionID: nonEmpty(c.Link.SubscriptionID),
		})
	case c.Set != nil:
		n, err = q.ApplySubscription(ctx, sqlcgen.ApplySubscriptionParams{
			Plan:                 c.Set.Plan,
			Status:               c.Set.Status,
			StripeSubscriptionID: &c.Set.SubscriptionID,
			CurrentPeriodEnd:     optionalTime(c.Set.CurrentPeriodEnd),
			CancelAtPeriodEnd:    c.Set.CancelAtPeriodEnd,
			StateTime:            &e.Time,
			StripeCustomerID:     &c.Set.CustomerID,
		})
	case c.PastDue != nil:
		n, err = q.MarkPastDue(ctx, sqlcgen.MarkPastDueParams{
			EventTime: &e.Time, StripeCustomerID: &c.PastDue.CustomerID, StripeSubscriptionID: &c.PastDue.SubscriptionID,
		})
	default:
		n = 0
	}
	if err != nil {
		return "", interpretError(err, "subscription")
	}
	if customer := changedCustomer(c); n > 0 && customer != "" {
		if err := q.NotifyPlanOfCustomer(ctx, &customer); err != nil {
			return "", interpretError(err, "notification")
		}
	}
	// The event is recorded even when it changed nothing: it is handled.
	if err := tx.Commit(ctx); err != nil {
		return "", interpretError(err, "stripe event")
	}
	if n == 0 {
		return billing.Stale, nil
	}
	return billing.Applied, nil
}

// changedCustomer is the Stripe customer whose subscription c changes.
func changedCustomer(c billing.Change) string {
	switch {
	case c.Link != nil:
		return c.Link.CustomerID
	case c.Set != nil:
		return c.Set.CustomerID
	case c.PastDue != nil:
		return c.PastDue.CustomerID
	}
	return ""
}

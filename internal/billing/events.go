package billing

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/plan"
)

// The Stripe event types billing handles; others are acknowledged and
// ignored.
const (
	EventCheckoutCompleted    = "checkout.session.completed"
	EventSubscriptionCreated  = "customer.subscription.created"
	EventSubscriptionUpdated  = "customer.subscription.updated"
	EventSubscriptionDeleted  = "customer.subscription.deleted"
	EventInvoicePaymentFailed = "invoice.payment_failed"
)

// Event is a verified Stripe event, decoded by the adapter: the fields of
// its object that billing reads. At most one of the object fields is set,
// by its type; none for a type billing does not handle.
type Event struct {
	ID   string
	Type string
	// Time is the event's creation, which orders a subscription's states.
	Time time.Time

	Checkout      *CheckoutSession      // checkout.session.completed
	Subscription  *StripeSubscription   // customer.subscription.*
	PaymentFailed *InvoicePaymentFailed // invoice.payment_failed
}

// CheckoutSession is a completed Checkout.
type CheckoutSession struct {
	// ClientReferenceID is what CreateCheckoutSession set: the user's id.
	ClientReferenceID string
	Mode              string // "subscription" for Parley's
	CustomerID        string
	SubscriptionID    string
}

// StripeSubscription is a subscription as an event carries it.
type StripeSubscription struct {
	ID                string
	CustomerID        string
	Status            string
	PriceIDs          []string
	CurrentPeriodEnd  time.Time
	CancelAtPeriodEnd bool
}

// InvoicePaymentFailed is an invoice whose payment failed.
type InvoicePaymentFailed struct {
	CustomerID     string
	SubscriptionID string // "" for an invoice of no subscription
}

// HandleEvent applies a verified event once: a redelivered event, an
// event older than the state saved, an unknown customer and an unhandled
// type change nothing, and none is an error (Stripe need not send them
// again). An error means nothing was saved; the webhook answers 500 and
// Stripe retries.
func (s *Service) HandleEvent(ctx context.Context, e Event) (Outcome, error) {
	change, ok := s.changeOf(e)
	if !ok {
		return Ignored, nil
	}
	out, err := s.store.ApplyEvent(ctx, EventRecord{ID: e.ID, Type: e.Type, Time: e.Time}, change)
	if err != nil {
		return "", err
	}
	s.log.InfoContext(ctx, "stripe event", "event_id", e.ID, "type", e.Type, "outcome", string(out))
	return out, nil
}

// changeOf maps an event to its change; false for events billing ignores.
func (s *Service) changeOf(e Event) (Change, bool) {
	switch {
	case e.Type == EventCheckoutCompleted && e.Checkout != nil:
		userID, err := uuid.Parse(e.Checkout.ClientReferenceID)
		if err != nil || e.Checkout.Mode != "subscription" || e.Checkout.CustomerID == "" {
			return Change{}, false // not a checkout this service started
		}
		return Change{Link: &Link{UserID: userID, CustomerID: e.Checkout.CustomerID, SubscriptionID: e.Checkout.SubscriptionID}}, true
	case (e.Type == EventSubscriptionCreated || e.Type == EventSubscriptionUpdated || e.Type == EventSubscriptionDeleted) && e.Subscription != nil:
		sub := e.Subscription
		status := sub.Status
		if e.Type == EventSubscriptionDeleted {
			status = StatusCanceled // what Stripe sends; never trust anything else here
		}
		return Change{Set: &SubscriptionUpdate{
			CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Plan: s.planPaidFor(status, sub.PriceIDs), Status: status,
			CurrentPeriodEnd: sub.CurrentPeriodEnd, CancelAtPeriodEnd: sub.CancelAtPeriodEnd,
		}}, true
	case e.Type == EventInvoicePaymentFailed && e.PaymentFailed != nil && e.PaymentFailed.SubscriptionID != "":
		return Change{PastDue: &PastDue{CustomerID: e.PaymentFailed.CustomerID, SubscriptionID: e.PaymentFailed.SubscriptionID}}, true
	}
	return Change{}, false
}

// planPaidFor is the plan a subscription in status with those prices pays
// for: the priced plan while it is active, trialing or past due (Stripe
// is retrying the payment), free otherwise (canceled, unpaid, incomplete,
// paused) or for a price Parley does not sell.
func (s *Service) planPaidFor(status string, priceIDs []string) string {
	if !keepsPlan(status) {
		return plan.Free
	}
	for name, price := range s.cfg.Prices {
		if slices.Contains(priceIDs, price) {
			return name
		}
	}
	return plan.Free
}

package billing

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/plan"
)

// Stripe is the part of Stripe's API billing calls. Errors are apperr
// errors: Unavailable when Stripe cannot be reached or fails, Internal
// for a request Stripe refuses.
type Stripe interface {
	// CreateCustomer creates the user's Stripe customer. Calls for the
	// same user within a day return the same customer (the adapter sends
	// an idempotency key naming the user), so racing checkouts do not
	// create two.
	CreateCustomer(ctx context.Context, userID uuid.UUID, email string) (customerID string, err error)
	// CreateCheckoutSession starts a subscription checkout and returns its
	// URL.
	CreateCheckoutSession(ctx context.Context, c Checkout) (url string, err error)
	// CreatePortalSession opens the customer's billing portal and returns
	// its URL.
	CreatePortalSession(ctx context.Context, customerID, returnURL string) (url string, err error)
	// CancelSubscription cancels a subscription now; one already canceled
	// or gone is no error.
	CancelSubscription(ctx context.Context, subscriptionID string) error
}

// Checkout is a subscription checkout for one user.
type Checkout struct {
	UserID     uuid.UUID // Stripe's client_reference_id
	CustomerID string
	PriceID    string
	SuccessURL string
	CancelURL  string
}

// Config is what the Service sells and where Stripe sends users back.
type Config struct {
	// Prices maps each plan on sale to its Stripe price id.
	Prices map[string]string
	// SuccessURL and CancelURL are where Checkout returns the user;
	// SuccessURL is also the portal's return link.
	SuccessURL, CancelURL string
}

// Caller is the user asking to pay, as their access token says.
type Caller struct {
	UserID    uuid.UUID
	Email     string
	Anonymous bool
}

// ErrNotSetUp answers every call on a server without Stripe.
var ErrNotSetUp = apperr.New(apperr.FailedPrecondition, "billing is not set up")

// Service applies the billing rules.
type Service struct {
	store  Store
	stripe Stripe // nil: billing is not set up
	cfg    Config
	log    *slog.Logger
}

// NewService returns a Service. A nil stripe makes every call answer
// ErrNotSetUp (the server runs without billing); log may be nil.
func NewService(store Store, stripe Stripe, cfg Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, stripe: stripe, cfg: cfg, log: log}
}

// Configured reports whether Stripe is set up.
func (s *Service) Configured() bool { return s.stripe != nil }

// CreateCheckoutSession returns a Stripe Checkout URL that subscribes the
// caller to planName. Errors: ErrNotSetUp; Invalid for a plan not on sale;
// FailedPrecondition for an anonymous caller or one whose subscription is
// still live; Unavailable when Stripe or the database is down.
func (s *Service) CreateCheckoutSession(ctx context.Context, c Caller, planName string) (string, error) {
	if s.stripe == nil {
		return "", ErrNotSetUp
	}
	price, ok := s.cfg.Prices[planName]
	if !ok || planName == "" {
		return "", apperr.InvalidField("plan", "must be %q", plan.Pro)
	}
	if c.Anonymous {
		return "", apperr.New(apperr.FailedPrecondition, "anonymous users cannot subscribe: sign in with an email or a provider account first")
	}
	sub, err := s.store.Subscription(ctx, c.UserID)
	if err != nil && !apperr.IsNotFound(err) {
		return "", err
	}
	if sub.Live() {
		return "", apperr.New(apperr.FailedPrecondition, "you already have a subscription: change it in the billing portal")
	}
	customerID := sub.CustomerID
	if customerID == "" {
		if customerID, err = s.stripe.CreateCustomer(ctx, c.UserID, c.Email); err != nil {
			return "", err
		}
		// Racing checkouts may have saved another; use the one saved.
		if customerID, err = s.store.SaveCustomer(ctx, c.UserID, customerID); err != nil {
			return "", err
		}
	}
	return s.stripe.CreateCheckoutSession(ctx, Checkout{
		UserID: c.UserID, CustomerID: customerID, PriceID: price, SuccessURL: s.cfg.SuccessURL, CancelURL: s.cfg.CancelURL,
	})
}

// CreateBillingPortalSession returns the URL of the caller's billing
// portal. Errors: ErrNotSetUp; FailedPrecondition before the caller's
// first checkout; Unavailable when Stripe or the database is down.
func (s *Service) CreateBillingPortalSession(ctx context.Context, userID uuid.UUID) (string, error) {
	if s.stripe == nil {
		return "", ErrNotSetUp
	}
	sub, err := s.store.Subscription(ctx, userID)
	if err != nil && !apperr.IsNotFound(err) {
		return "", err
	}
	if sub.CustomerID == "" {
		return "", apperr.New(apperr.FailedPrecondition, "no billing account yet: subscribe to a plan first")
	}
	return s.stripe.CreatePortalSession(ctx, sub.CustomerID, s.cfg.SuccessURL)
}

// CancelSubscription cancels the user's live subscription at once, for an
// account being deleted; a user without one is no error. Stripe then
// sends customer.subscription.deleted, which the webhook applies. Errors:
// ErrNotSetUp when the user has a live subscription but Stripe is not set
// up; Unavailable when Stripe or the database is down.
func (s *Service) CancelSubscription(ctx context.Context, userID uuid.UUID) error {
	sub, err := s.store.Subscription(ctx, userID)
	if apperr.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !sub.Live() {
		return nil
	}
	if s.stripe == nil {
		return ErrNotSetUp
	}
	return s.stripe.CancelSubscription(ctx, sub.SubscriptionID)
}

// Renewal says when userID's paid plan renews next (a live subscription's
// period end), or when it ends (a live one canceled at its period end);
// zero times for a user on no paid plan.
func (s *Service) Renewal(ctx context.Context, userID uuid.UUID) (renews, ends time.Time, err error) {
	sub, err := s.store.Subscription(ctx, userID)
	if apperr.IsNotFound(err) {
		return time.Time{}, time.Time{}, nil
	}
	if err != nil || !sub.Live() || sub.CurrentPeriodEnd.IsZero() {
		return time.Time{}, time.Time{}, err
	}
	if sub.CancelAtPeriodEnd {
		return time.Time{}, sub.CurrentPeriodEnd, nil
	}
	return sub.CurrentPeriodEnd, time.Time{}, nil
}

// Package stripeapi is billing's adapter to Stripe, on stripe-go: the API
// calls billing.Stripe declares, and the webhook endpoint that verifies
// Stripe's events and hands them to billing.Service.
package stripeapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v84"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/billing"
)

// Config says how to reach Stripe.
type Config struct {
	// SecretKey is the API key (STRIPE_SECRET_KEY).
	SecretKey string
	// APIBase replaces https://api.stripe.com (STRIPE_API_BASE; tests
	// point it at stripe-mock); empty keeps Stripe's.
	APIBase string
	// Timeout bounds one API call, retries included (default 10s).
	Timeout time.Duration
}

// Client implements billing.Stripe.
type Client struct {
	sc *stripe.Client
}

var _ billing.Stripe = (*Client)(nil)

// New returns a client. stripe-go retries network errors and 409/429/5xx
// answers twice with backoff, sending the same idempotency key, so a
// retried create makes one object.
func New(cfg Config) *Client {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	backend := &stripe.BackendConfig{
		HTTPClient:    &http.Client{Timeout: timeout},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	var opts []stripe.ClientOption
	if cfg.APIBase != "" {
		backend.URL = stripe.String(cfg.APIBase)
	}
	opts = append(opts, stripe.WithBackends(stripe.NewBackendsWithConfig(backend)))
	return &Client{sc: stripe.NewClient(cfg.SecretKey, opts...)}
}

// CreateCustomer implements billing.Stripe. The idempotency key names the
// user, so Stripe answers every call for the same user within 24 hours
// with the first customer created.
func (c *Client) CreateCustomer(ctx context.Context, userID uuid.UUID, email string) (string, error) {
	params := &stripe.CustomerCreateParams{Metadata: map[string]string{"parley_user_id": userID.String()}}
	if email != "" {
		params.Email = stripe.String(email)
	}
	params.SetIdempotencyKey("parley-customer-" + userID.String())
	cus, err := c.sc.V1Customers.Create(ctx, params)
	if err != nil {
		return "", interpretError(err)
	}
	return cus.ID, nil
}

// CreateCheckoutSession implements billing.Stripe: a subscription to one
// price, tied to the user by client_reference_id and the subscription's
// metadata.
func (c *Client) CreateCheckoutSession(ctx context.Context, co billing.Checkout) (string, error) {
	params := &stripe.CheckoutSessionCreateParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		Customer:          stripe.String(co.CustomerID),
		ClientReferenceID: stripe.String(co.UserID.String()),
		LineItems:         []*stripe.CheckoutSessionCreateLineItemParams{{Price: stripe.String(co.PriceID), Quantity: stripe.Int64(1)}},
		SuccessURL:        stripe.String(co.SuccessURL),
		CancelURL:         stripe.String(co.CancelURL),
		SubscriptionData: &stripe.CheckoutSessionCreateSubscriptionDataParams{
			Metadata: map[string]string{"parley_user_id": co.UserID.String()},
		},
	}
	s, err := c.sc.V1CheckoutSessions.Create(ctx, params)
	if err != nil {
		return "", interpretError(err)
	}
	return s.URL, nil
}

// CreatePortalSession implements billing.Stripe.
func (c *Client) CreatePortalSession(ctx context.Context, customerID, returnURL string) (string, error) {
	s, err := c.sc.V1BillingPortalSessions.Create(ctx, &stripe.BillingPortalSessionCreateParams{
		Customer: stripe.String(customerID), ReturnURL: stripe.String(returnURL),
	})
	if err != nil {
		return "", interpretError(err)
	}
	return s.URL, nil
}

// CancelSubscription implements billing.Stripe: at once, not at the
// period's end (the account is going away).
func (c *Client) CancelSubscription(ctx context.Context, subscriptionID string) error {
	_, err := c.sc.V1Subscriptions.Cancel(ctx, subscriptionID, &stripe.SubscriptionCancelParams{})
	var se *stripe.Error
	if errors.As(err, &se) && se.Code == stripe.ErrorCodeResourceMissing {
		return nil // canceled (and gone) already
	}
	if err != nil {
		return interpretError(err)
	}
	return nil
}

// interpretError maps stripe-go's errors to apperr, once: Stripe down,
// rate limiting us or failing is Unavailable; a request it refuses is a
// bug or a misconfiguration here (a wrong key or price), so Internal. The
// cause is logged by the RPC layer, never shown to clients.
func interpretError(err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		switch {
		case se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= 500:
			return apperr.Wrap(err, apperr.Unavailable, "the payment provider is unavailable; try again")
		case se.HTTPStatusCode == http.StatusUnauthorized:
			return apperr.Wrap(err, apperr.Internal, "billing is misconfigured")
		}
		return apperr.Wrap(err, apperr.Internal, "the payment provider refused the request")
	}
	if errors.Is(err, context.Canceled) {
		return apperr.Wrap(err, apperr.Canceled, "request canceled")
	}
	return apperr.Wrap(err, apperr.Unavailable, "the payment provider is unavailable; try again")
}

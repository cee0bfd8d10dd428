package stripeapi_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/stripeapi"
	"github.com/parleyhq/parley/internal/stripetest"
)

// TestClient: each call billing makes, against stripe-mock.
func TestClient(t *testing.T) {
	t.Parallel()
	c := stripeapi.New(stripeapi.Config{SecretKey: stripetest.Key, APIBase: stripetest.Start(t).URL})
	ctx := t.Context()
	cus, err := c.CreateCustomer(ctx, uuid.New(), "a@example.com")
	if err != nil || !strings.HasPrefix(cus, "cus_") {
		t.Fatalf("CreateCustomer = %q, %v", cus, err)
	}
	url, err := c.CreateCheckoutSession(ctx, billing.Checkout{UserID: uuid.New(), CustomerID: cus, PriceID: "price_1", SuccessURL: "https://a.example/", CancelURL: "https://b.example/"})
	if err != nil || !strings.HasPrefix(url, "https://checkout.stripe.com/") {
		t.Fatalf("CreateCheckoutSession = %q, %v", url, err)
	}
	if url, err = c.CreatePortalSession(ctx, cus, "https://a.example/"); err != nil || !strings.HasPrefix(url, "https://") {
		t.Fatalf("CreatePortalSession = %q, %v", url, err)
	}
	if err := c.CancelSubscription(ctx, "sub_123"); err != nil {
		t.Fatalf("CancelSubscription: %v", err)
	}
	t.Run("ErrUnreachable", func(t *testing.T) {
		down := stripeapi.New(stripeapi.Config{SecretKey: stripetest.Key, APIBase: "http://127.0.0.1:1"})
		_, err := down.CreateCustomer(ctx, uuid.New(), "")
		if apperr.CodeOf(err) != apperr.Unavailable || strings.Contains(err.(*apperr.Error).Message, "127.0.0.1") {
			t.Errorf("Stripe down: %v, want unavailable without the address", err)
		}
	})
}

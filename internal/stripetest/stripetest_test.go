package stripetest_test

import (
	"testing"

	"github.com/stripe/stripe-go/v84"

	"github.com/parleyhq/parley/internal/stripetest"
)

// TestStart: stripe-mock answers stripe-go's calls at the URL Start gives,
// reflecting what the request sent.
func TestStart(t *testing.T) {
	t.Parallel()
	s := stripetest.Start(t)
	c, err := s.Client().V1Customers.Create(t.Context(), &stripe.CustomerCreateParams{Email: stripe.String("a@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" || c.Email != "a@example.com" {
		t.Errorf("customer %q with email %q, want an id and a@example.com", c.ID, c.Email)
	}
}

// TestParallel: servers of parallel tests do not collide (stripe-mock's
// HTTPS listener included).
func TestParallel(t *testing.T) {
	t.Parallel()
	for i := range 3 {
		t.Run(string(rune('A'+i)), func(t *testing.T) {
			t.Parallel()
			if _, err := stripetest.Start(t).Client().V1Customers.Create(t.Context(), &stripe.CustomerCreateParams{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

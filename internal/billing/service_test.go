package billing_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/plan"
)

// memStore is billing.Store in memory, enough for the service's rules.
type memStore struct {
	mu   sync.Mutex
	subs map[uuid.UUID]billing.Subscription
}

func (m *memStore) PlanName(_ context.Context, userID uuid.UUID) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.subs[userID]; ok {
		return s.Plan, nil
	}
	return plan.Free, nil
}

func (m *memStore) Subscription(_ context.Context, userID uuid.UUID) (billing.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[userID]
	if !ok {
		return billing.Subscription{}, apperr.New(apperr.NotFound, "subscription not found")
	}
	return s, nil
}

func (m *memStore) SaveCustomer(_ context.Context, userID uuid.UUID, customerID string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.subs[userID]
	if s.CustomerID == "" {
		s.UserID, s.CustomerID, s.Plan = userID, customerID, plan.Free
		m.subs[userID] = s
	}
	return s.CustomerID, nil
}

func (m *memStore) ApplyEvent(context.Context, billing.EventRecord, billing.Change) (billing.Outcome, error) {
	return billing.Applied, nil
}

// fakeStripe records the subscriptions it was asked to cancel.
type fakeStripe struct {
	mu       sync.Mutex
	canceled []string
}

func (*fakeStripe) CreateCustomer(_ context.Context, userID uuid.UUID, _ string) (string, error) {
	return "cus_" + userID.String(), nil
}

func (*fakeStripe) CreateCheckoutSession(context.Context, billing.Checkout) (string, error) {
	return "https://checkout.example/1", nil
}

func (*fakeStripe) CreatePortalSession(context.Context, string, string) (string, error) {
	return "https://portal.example/1", nil
}

func (f *fakeStripe) CancelSubscription(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.canceled = append(f.canceled, id)
	return nil
}

// TestCancelSubscription: what DeleteMe relies on. A live subscription is
// canceled at Stripe; a user with none, or with one already over, costs
// no call; without Stripe a live one is an error, not silently kept.
func TestCancelSubscription(t *testing.T) {
	t.Parallel()
	live, ended, checkoutOnly, stranger := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	store := &memStore{subs: map[uuid.UUID]billing.Subscription{
		live:         {UserID: live, Plan: plan.Pro, Status: billing.StatusPastDue, CustomerID: "cus_1", SubscriptionID: "sub_live"},
		ended:        {UserID: ended, Plan: plan.Free, Status: billing.StatusCanceled, CustomerID: "cus_2", SubscriptionID: "sub_ended"},
		checkoutOnly: {UserID: checkoutOnly, Plan: plan.Free, CustomerID: "cus_3"},
	}}
	stripe := &fakeStripe{}
	svc := billing.NewService(store, stripe, billing.Config{Prices: map[string]string{plan.Pro: "price_pro"}}, nil)
	for _, user := range []uuid.UUID{live, ended, checkoutOnly, stranger} {
		if err := svc.CancelSubscription(t.Context(), user); err != nil {
			t.Fatal(err)
		}
	}
	if len(stripe.canceled) != 1 || stripe.canceled[0] != "sub_live" {
		t.Errorf("canceled %q, want [sub_live]", stripe.canceled)
	}
	t.Run("ErrNotSetUp", func(t *testing.T) {
		unset := billing.NewService(store, nil, billing.Config{}, nil)
		if err := unset.CancelSubscription(t.Context(), live); apperr.CodeOf(err) != apperr.FailedPrecondition {
			t.Errorf("live subscription without Stripe: %v, want failed_precondition", err)
		}
		if err := unset.CancelSubscription(t.Context(), stranger); err != nil {
			t.Errorf("no subscription without Stripe: %v, want nil", err)
		}
	})
}

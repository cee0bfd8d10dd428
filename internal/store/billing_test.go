package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/store"
)

// subscribed saves a customer for a new user and returns both.
func subscribed(t *testing.T, st *store.Store) (uuid.UUID, string) {
	t.Helper()
	user, customer := uuid.New(), "cus_"+uuid.NewString()
	if _, err := st.SaveCustomer(t.Context(), user, customer); err != nil {
		t.Fatal(err)
	}
	return user, customer
}

func event(t time.Time) billing.EventRecord {
	return billing.EventRecord{ID: "evt_" + uuid.NewString(), Type: "customer.subscription.updated", Time: t}
}

func set(customer, sub, planName, status string) billing.Change {
	return billing.Change{Set: &billing.SubscriptionUpdate{CustomerID: customer, SubscriptionID: sub, Plan: planName, Status: status}}
}

func TestBillingStore(t *testing.T) {
	t.Parallel()
	st := store.New(pgtestPool(t))
	ctx := t.Context()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	apply := func(t *testing.T, e billing.EventRecord, c billing.Change, want billing.Outcome) {
		t.Helper()
		got, err := st.ApplyEvent(ctx, e, c)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("ApplyEvent(%s at %s) = %s, want %s", e.ID, e.Time.Format(time.TimeOnly), got, want)
		}
	}
	planOf := func(t *testing.T, user uuid.UUID) string {
		t.Helper()
		name, err := st.PlanName(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		return name
	}

	t.Run("NoRowIsFree", func(t *testing.T) {
		if got := planOf(t, uuid.New()); got != plan.Free {
			t.Errorf("plan = %q, want free", got)
		}
		if _, err := st.Subscription(ctx, uuid.New()); !apperr.IsNotFound(err) {
			t.Errorf("Subscription of a stranger: %v, want not_found", err)
		}
	})
	t.Run("SaveCustomerKeepsTheFirst", func(t *testing.T) {
		user := uuid.New()
		var wg sync.WaitGroup
		saved := make([]string, 8)
		for i := range saved {
			wg.Go(func() {
				var err error
				if saved[i], err = st.SaveCustomer(ctx, user, fmt.Sprintf("cus_%d", i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, s := range saved {
			if s != saved[0] {
				t.Fatalf("racing saves returned %q, want one customer", saved)
			}
		}
		sub, err := st.Subscription(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if sub.CustomerID != saved[0] || sub.Plan != plan.Free {
			t.Errorf("subscription %+v, want customer %s on free", sub, saved[0])
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		user, customer := subscribed(t, st)
		e := event(t0)
		apply(t, e, set(customer, "sub_1", plan.Pro, billing.StatusActive), billing.Applied)
		apply(t, e, set(customer, "sub_1", plan.Free, billing.StatusCanceled), billing.Duplicate)
		if got := planOf(t, user); got != plan.Pro {
			t.Errorf("plan after a replay = %q, want pro", got)
		}
	})
	t.Run("OutOfOrder", func(t *testing.T) {
		user, customer := subscribed(t, st)
		apply(t, event(t0.Add(time.Minute)), set(customer, "sub_1", plan.Pro, billing.StatusActive), billing.Applied)
		apply(t, event(t0), set(customer, "sub_1", plan.Free, billing.StatusIncomplete), billing.Stale)
		if got := planOf(t, user); got != plan.Pro {
			t.Errorf("plan after an older event = %q, want pro", got)
		}
	})
	t.Run("CanceledStaysCanceledAtTheSameSecond", func(t *testing.T) {
		user, customer := subscribed(t, st)
		apply(t, event(t0), set(customer, "sub_1", plan.Free, billing.StatusCanceled), billing.Applied)
		apply(t, event(t0), set(customer, "sub_1", plan.Pro, billing.StatusActive), billing.Stale)
		if got := planOf(t, user); got != plan.Free {
			t.Errorf("plan = %q, want free", got)
		}
		// A new subscription at the same second does apply.
		apply(t, event(t0), set(customer, "sub_2", plan.Pro, billing.StatusActive), billing.Applied)
		if got := planOf(t, user); got != plan.Pro {
			t.Errorf("plan after a new subscription = %q, want pro", got)
		}
	})
	t.Run("PastDueKeepsPlanUntilCanceled", func(t *testing.T) {
		user, customer := subscribed(t, st)
		apply(t, event(t0), set(customer, "sub_1", plan.Pro, billing.StatusActive), billing.Applied)
		failed := billing.Change{PastDue: &billing.PastDue{CustomerID: customer, SubscriptionID: "sub_1"}}
		apply(t, event(t0.Add(time.Hour)), failed, billing.Applied)
		sub, err := st.Subscription(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Plan != plan.Pro || sub.Status != billing.StatusPastDue || !sub.PastDueSince.Equal(t0.Add(time.Hour)) {
			t.Errorf("after a failed payment: %+v, want pro, past_due since %s", sub, t0.Add(time.Hour))
		}
		apply(t, event(t0.Add(2*time.Hour)), failed, billing.Applied)
		if sub, _ = st.Subscription(ctx, user); !sub.PastDueSince.Equal(t0.Add(time.Hour)) {
			t.Errorf("a second failure moved past_due_since to %s", sub.PastDueSince)
		}
		apply(t, event(t0.Add(3*time.Hour)), set(customer, "sub_1", plan.Free, billing.StatusCanceled), billing.Applied)
		// A failure reported late does not revive it.
		apply(t, event(t0.Add(4*time.Hour)), failed, billing.Stale)
		if sub, _ = st.Subscription(ctx, user); sub.Plan != plan.Free || sub.Status != billing.StatusCanceled || !sub.PastDueSince.IsZero() {
			t.Errorf("after the retries ran out: %+v, want free, canceled", sub)
		}
	})
	t.Run("UnknownCustomerIsStale", func(t *testing.T) {
		apply(t, event(t0), set("cus_nobody", "sub_1", plan.Pro, billing.StatusActive), billing.Stale)
	})
	t.Run("Link", func(t *testing.T) {
		user, customer := subscribed(t, st)
		apply(t, event(t0), billing.Change{Link: &billing.Link{UserID: user, CustomerID: customer, SubscriptionID: "sub_9"}}, billing.Applied)
		sub, err := st.Subscription(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if sub.SubscriptionID != "sub_9" {
			t.Errorf("subscription id %q, want sub_9", sub.SubscriptionID)
		}
		// Another customer for the same user is not linked.
		apply(t, event(t0), billing.Change{Link: &billing.Link{UserID: user, CustomerID: "cus_other"}}, billing.Stale)
		// Nor is the customer for another user.
		apply(t, event(t0), billing.Change{Link: &billing.Link{UserID: uuid.New(), CustomerID: customer}}, billing.Stale)
	})
}

// BenchmarkPlanOf measures what the rate limiter pays per request to read
// the plan from the database (one primary-key lookup, no cache).
func BenchmarkPlanOf(b *testing.B) {
	st := store.New(pgtestPool(b))
	user, customer := uuid.New(), "cus_"+uuid.NewString()
	if _, err := st.SaveCustomer(context.Background(), user, customer); err != nil {
		b.Fatal(err)
	}
	plans := billing.Plans{Catalog: plan.Catalog{Free: plan.Plan{Name: plan.Free}, Pro: plan.Plan{Name: plan.Pro}}, Store: st}
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := plans.PlanOf(ctx, user); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

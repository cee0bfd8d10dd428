package stripeapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v84"
	"github.com/stripe/stripe-go/v84/webhook"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/billing"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/stripeapi"
	"github.com/parleyhq/parley/internal/stripetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// event is a Stripe event's JSON as Stripe sends it.
func event(id, typ string, created time.Time, object map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "type": typ,
		"created": created.Unix(), "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": object},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// subscription is a subscription object to the pro price.
func subscription(id, customer, status string, price string) map[string]any {
	return map[string]any{
		"id": id, "object": "subscription", "customer": customer, "status": status, "cancel_at_period_end": false,
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_1", "object": "subscription_item", "current_period_end": time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
			"price": map[string]any{"id": price, "object": "price"},
		}}},
	}
}

func invoice(customer, sub string) map[string]any {
	return map[string]any{
		"id": "in_" + uuid.NewString(), "object": "invoice", "customer": customer,
		"parent": map[string]any{"type": "subscription_details", "subscription_details": map[string]any{"subscription": sub}},
	}
}

type sender struct {
	t   *testing.T
	url string
}

// post sends payload signed with secret at signedAt, and returns the status.
func (s sender) post(payload []byte, secret string, signedAt time.Time) int {
	s.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: signedAt})
	return s.postHeader(payload, signed.Header)
}

func (s sender) postHeader(payload []byte, header string) int {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodPost, s.url+stripeapi.WebhookPath, bytes.NewReader(payload))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if header != "" {
		req.Header.Set("Stripe-Signature", header)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// send posts a validly signed event and wants 200.
func (s sender) send(payload []byte) {
	s.t.Helper()
	if code := s.post(payload, apitest.StripeWebhookSecret, time.Now()); code != http.StatusOK {
		s.t.Fatalf("POST %s: %d, want 200", stripeapi.WebhookPath, code)
	}
}

// TestWebhook: Stripe's events change plans once each, in Stripe's order
// whatever order they arrive in; an event that is not Stripe's changes
// nothing.
func TestWebhook(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{StripeURL: stripetest.Start(t).URL})
	s := sender{t: t, url: env.URL}
	plans := billing.Plans{Catalog: plan.Catalog{Free: plan.Plan{Name: plan.Free}, Pro: plan.Plan{Name: plan.Pro}}, Store: env.Store}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)

	// customer starts a checkout for a new user, which creates its Stripe
	// customer, and returns both.
	customer := func(t *testing.T) (uuid.UUID, string) {
		t.Helper()
		user := uuid.New()
		_, err := env.BillingClient(t, "connect+proto", user).CreateCheckoutSession(t.Context(), connect.NewRequest(&parleyv1.CreateCheckoutSessionRequest{Plan: plan.Pro}))
		if err != nil {
			t.Fatal(err)
		}
		sub, err := env.Store.Subscription(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		return user, sub.CustomerID
	}
	wantPlan := func(t *testing.T, user uuid.UUID, want, wantStatus string) billing.Subscription {
		t.Helper()
		// Through the resolver the rate limiter and quotas use: no cache.
		p, err := plans.PlanOf(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := env.Store.Subscription(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != want || sub.Status != wantStatus {
			t.Fatalf("plan %q, status %q; want %q, %q", p.Name, sub.Status, want, wantStatus)
		}
		return sub
	}
	evtID := func() string { return "evt_" + uuid.NewString() }
	created := func(customerID string, at time.Time) []byte {
		return event(evtID(), billing.EventSubscriptionCreated, at, subscription("sub_1", customerID, billing.StatusActive, apitest.StripePricePro))
	}

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		wantPlan(t, user, plan.Free, "")
		s.send(created(cus, t0))
		sub := wantPlan(t, user, plan.Pro, billing.StatusActive)
		if sub.SubscriptionID != "sub_1" || !sub.CurrentPeriodEnd.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("saved %+v", sub)
		}
	})
	t.Run("CheckoutCompleted", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		s.send(event(evtID(), billing.EventCheckoutCompleted, t0, map[string]any{
			"id": "cs_1", "object": "checkout.session", "mode": "subscription", "client_reference_id": user.String(),
			"customer": cus, "subscription": "sub_7",
		}))
		sub, err := env.Store.Subscription(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		if sub.SubscriptionID != "sub_7" || sub.Plan != plan.Free {
			t.Errorf("after checkout.session.completed: %+v, want sub_7 linked, plan from the subscription's events only", sub)
		}
	})
	t.Run("OtherPriceIsFree", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		s.send(event(evtID(), billing.EventSubscriptionCreated, t0, subscription("sub_1", cus, billing.StatusActive, "price_unknown")))
		wantPlan(t, user, plan.Free, billing.StatusActive)
	})
	t.Run("ErrSignature", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		payload := created(cus, t0)
		for name, code := range map[string]int{
			"WrongSecret":    s.post(payload, "whsec_other", time.Now()),
			"StaleTimestamp": s.post(payload, apitest.StripeWebhookSecret, time.Now().Add(-webhook.DefaultTolerance-time.Minute)),
			"Unsigned":       s.postHeader(payload, ""),
			"Garbage":        s.postHeader(payload, "t=1,v1=abc"),
		} {
			if code != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", name, code)
			}
		}
		wantPlan(t, user, plan.Free, "")
		// Nothing was recorded either: the real event still applies.
		s.send(payload)
		wantPlan(t, user, plan.Pro, billing.StatusActive)
	})
	t.Run("ErrAPIVersion", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		payload := bytes.Replace(created(cus, t0), []byte(stripe.APIVersion), []byte("2019-01-01"), 1)
		if code := s.post(payload, apitest.StripeWebhookSecret, time.Now()); code != http.StatusBadRequest {
			t.Errorf("event of another API version: %d, want 400", code)
		}
		wantPlan(t, user, plan.Free, "")
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		t.Parallel()
		payload := []byte(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", stripeapi.MaxWebhookBody)))
		if code := s.post(payload, apitest.StripeWebhookSecret, time.Now()); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d bytes: %d, want 413", len(payload), code)
		}
	})
	t.Run("Replay", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		first := created(cus, t0)
		s.send(first)
		s.send(event(evtID(), billing.EventSubscriptionDeleted, t0.Add(time.Minute), subscription("sub_1", cus, billing.StatusCanceled, apitest.StripePricePro)))
		wantPlan(t, user, plan.Free, billing.StatusCanceled)
		// Stripe redelivers the first event (as it does after a timeout):
		// acknowledged, applied no second time.
		s.send(first)
		wantPlan(t, user, plan.Free, billing.StatusCanceled)
	})
	t.Run("OutOfOrder", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		s.send(event(evtID(), billing.EventSubscriptionUpdated, t0.Add(2*time.Minute), subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro)))
		s.send(event(evtID(), billing.EventSubscriptionCreated, t0, subscription("sub_1", cus, billing.StatusIncomplete, apitest.StripePricePro)))
		wantPlan(t, user, plan.Pro, billing.StatusActive)
		s.send(event(evtID(), billing.EventSubscriptionDeleted, t0.Add(3*time.Minute), subscription("sub_1", cus, billing.StatusCanceled, apitest.StripePricePro)))
		// An update sent before the deletion arrives after it.
		s.send(event(evtID(), billing.EventSubscriptionUpdated, t0.Add(time.Minute), subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro)))
		wantPlan(t, user, plan.Free, billing.StatusCanceled)
	})
	t.Run("UnknownType", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		s.send(event(evtID(), "customer.updated", t0, map[string]any{"id": cus, "object": "customer"}))
		s.send(event(evtID(), "invoice.paid", t0, invoice(cus, "sub_1")))
		wantPlan(t, user, plan.Free, "")
	})
	t.Run("PaymentFailedThenRecovery", func(t *testing.T) {
		t.Parallel()
		user, cus := customer(t)
		s.send(created(cus, t0))
		s.send(event(evtID(), billing.EventInvoicePaymentFailed, t0.Add(time.Minute), invoice(cus, "sub_1")))
		// Stripe retries the payment: the plan holds meanwhile.
		sub := wantPlan(t, user, plan.Pro, billing.StatusPastDue)
		if !sub.PastDueSince.Equal(t0.Add(time.Minute)) {
			t.Errorf("past_due_since %s, want %s", sub.PastDueSince, t0.Add(time.Minute))
		}
		s.send(event(evtID(), billing.EventSubscriptionUpdated, t0.Add(2*time.Minute), subscription("sub_1", cus, billing.StatusPastDue, apitest.StripePricePro)))
		wantPlan(t, user, plan.Pro, billing.StatusPastDue)
		// A retry succeeds.
		s.send(event(evtID(), billing.EventSubscriptionUpdated, t0.Add(time.Hour), subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro)))
		if sub := wantPlan(t, user, plan.Pro, billing.StatusActive); !sub.PastDueSince.IsZero() {
			t.Errorf("past_due_since %s after recovery, want none", sub.PastDueSince)
		}
	})
	t.Run("PaymentFailedThenRetriesRunOut", func(t *testing.T) {
		t.Parallel()
		for _, end := range []struct{ typ, status string }{
			{billing.EventSubscriptionDeleted, billing.StatusCanceled},
			{billing.EventSubscriptionUpdated, billing.StatusUnpaid},
		} {
			user, cus := customer(t)
			s.send(created(cus, t0))
			s.send(event(evtID(), billing.EventInvoicePaymentFailed, t0.Add(time.Minute), invoice(cus, "sub_1")))
			wantPlan(t, user, plan.Pro, billing.StatusPastDue)
			s.send(event(evtID(), end.typ, t0.Add(time.Hour), subscription("sub_1", cus, end.status, apitest.StripePricePro)))
			wantPlan(t, user, plan.Free, end.status)
		}
	})
}

// A plan change that arrives at one instance reaches the plan every other
// instance applies at once: each caches plans, and forgets a user's when
// the database notifies the change.
func TestPlanChangeReachesEveryInstance(t *testing.T) {
	t.Parallel()
	stripeURL := stripetest.Start(t).URL
	dbURL := pgtest.NewDatabase(t)
	a := apitest.New(t, apitest.Options{StripeURL: stripeURL, DatabaseURL: dbURL, PlansFromDatabase: true})
	b := apitest.New(t, apitest.Options{StripeURL: stripeURL, DatabaseURL: dbURL, PlansFromDatabase: true})
	user := uuid.New()
	me := func() string {
		t.Helper()
		res, err := b.UserClient(t, "connect+json", user).GetMe(t.Context(), connect.NewRequest(&parleyv1.GetMeRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetPlan().GetName()
	}
	if got := me(); got != plan.Free {
		t.Fatalf("a new user's plan on b: %q, want free", got)
	}
	// The checkout and the webhook go to a.
	if _, err := a.BillingClient(t, "connect+proto", user).CreateCheckoutSession(t.Context(), connect.NewRequest(&parleyv1.CreateCheckoutSessionRequest{Plan: plan.Pro})); err != nil {
		t.Fatal(err)
	}
	sub, err := a.Store.Subscription(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	sender{t: t, url: a.URL}.send(event("evt_"+uuid.NewString(), billing.EventSubscriptionCreated, time.Now(),
		subscription("sub_1", sub.CustomerID, billing.StatusActive, apitest.StripePricePro)))
	// b's cache keeps a plan for 30 s; the notification makes it forget
	// within moments.
	deadline := time.Now().Add(5 * time.Second)
	for me() != plan.Pro {
		if time.Now().After(deadline) {
			t.Fatal("b still applies the old plan 5 s after the change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// GetMe says when the paid plan renews: the subscription's period end.
	res, err := b.UserClient(t, "grpc", user).GetMe(t.Context(), connect.NewRequest(&parleyv1.GetMeRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Msg.GetPlan().GetRenewTime().AsTime(), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) || res.Msg.GetPlan().GetEndTime() != nil {
		t.Errorf("renew_time %v, end_time %v; want renewal at %v and no end", got, res.Msg.GetPlan().GetEndTime(), want)
	}
}

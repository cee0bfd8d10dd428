package stripeapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stripe/stripe-go/v84/webhook"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/billing"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/stripeapi"
	"github.com/parleyhq/parley/internal/stripetest"
	"github.com/parleyhq/parley/internal/testlog"
)

// outcomes counts, by outcome, the "stripe event" lines billing logged for
// eventID: one per event that reached the database.
func outcomes(tb testing.TB, logs *testlog.Buffer, eventID string) map[string]int {
	tb.Helper()
	out := map[string]int{}
	for _, l := range logs.Lines() {
		var line struct {
			Msg     string `json:"msg"`
			EventID string `json:"event_id"`
			Outcome string `json:"outcome"`
		}
		if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "stripe event" && line.EventID == eventID {
			out[line.Outcome]++
		}
	}
	return out
}

// deployment is two instances of one service on one database, as Stripe
// reaches them behind a load balancer, with their logs.
type deployment struct {
	instances [2]*apitest.Env
	pool      *pgxpool.Pool
	logs      *testlog.Buffer
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	stripeURL := stripetest.Start(t).URL
	dbURL := pgtest.NewDatabase(t)
	d := &deployment{logs: &testlog.Buffer{}}
	log := slog.New(slog.NewJSONHandler(d.logs, nil))
	for i := range d.instances {
		d.instances[i] = apitest.New(t, apitest.Options{StripeURL: stripeURL, DatabaseURL: dbURL, PlansFromDatabase: true, Log: log})
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	d.pool = pool
	return d
}

// customer has a new user start a checkout, which creates their Stripe
// customer, and returns both.
func (d *deployment) customer(t *testing.T) (uuid.UUID, string) {
	t.Helper()
	user := uuid.New()
	env := d.instances[0]
	if _, err := env.BillingClient(t, "connect+proto", user).CreateCheckoutSession(t.Context(), connect.NewRequest(&parleyv1.CreateCheckoutSessionRequest{Plan: plan.Pro})); err != nil {
		t.Fatal(err)
	}
	sub, err := env.Store.Subscription(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	return user, sub.CustomerID
}

// deliver posts payload to instance i, signed now (as each of Stripe's
// deliveries is), and returns the status. Safe to call from any goroutine.
func (d *deployment) deliver(ctx context.Context, i int, payload []byte, signedAt time.Time) (int, error) {
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: apitest.StripeWebhookSecret, Timestamp: signedAt})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.instances[i%2].URL+stripeapi.WebhookPath, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signed.Header)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// deliverAll posts every payload at once, payloads[k] to instance k%2
// (all of them released together), and wants 200 for each.
func (d *deployment) deliverAll(t *testing.T, payloads [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := make(chan struct{})
	statuses := make([]int, len(payloads))
	errs := make([]error, len(payloads))
	var wg sync.WaitGroup
	for k, payload := range payloads {
		wg.Go(func() {
			<-start
			statuses[k], errs[k] = d.deliver(ctx, k, payload, time.Now())
		})
	}
	close(start)
	wg.Wait()
	for k := range payloads {
		if errs[k] != nil || statuses[k] != http.StatusOK {
			t.Errorf("delivery %d to instance %d: %d, %v; want 200", k, k%2, statuses[k], errs[k])
		}
	}
}

// recorded is how many rows stripe_events holds for eventID.
func (d *deployment) recorded(t *testing.T, eventID string) int {
	t.Helper()
	var n int
	if err := d.pool.QueryRow(t.Context(), `SELECT count(*) FROM parley.stripe_events WHERE id = $1`, eventID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// subscription is the user's saved subscription, read through instance i's
// store.
func (d *deployment) subscription(t *testing.T, user uuid.UUID) billing.Subscription {
	t.Helper()
	sub, err := d.instances[1].Store.Subscription(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestWebhookDeliveredConcurrently: Stripe may deliver one event more than
// once at the same moment (a retry racing a slow first attempt), each to
// any instance. The same event posted 8 times at once, to two instances
// sharing the database, is acknowledged 8 times and applied once: one
// "applied", seven "duplicate", one row recorded.
func TestWebhookDeliveredConcurrently(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	user, cus := d.customer(t)
	eventID := "evt_" + uuid.NewString()
	payload := event(eventID, billing.EventSubscriptionCreated, time.Now().Add(-time.Minute), subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro))
	d.deliverAll(t, [][]byte{payload, payload, payload, payload, payload, payload, payload, payload})

	if got := outcomes(t, d.logs, eventID); got[string(billing.Applied)] != 1 || got[string(billing.Duplicate)] != 7 || len(got) != 2 {
		t.Errorf("outcomes of 8 concurrent deliveries: %v; want 1 applied, 7 duplicate", got)
	}
	if n := d.recorded(t, eventID); n != 1 {
		t.Errorf("stripe_events holds %d rows of the event, want 1", n)
	}
	if sub := d.subscription(t, user); sub.Plan != plan.Pro || sub.Status != billing.StatusActive || sub.SubscriptionID != "sub_1" {
		t.Errorf("after the event: %+v, want pro, active, sub_1", sub)
	}
}

// TestWebhookConcurrentOutOfOrder: a subscription's events sent in a burst
// (created, then past due, then active again and set to cancel at the
// period's end) delivered all at once, newest first, to two instances, end
// in Stripe's order: the newest state, whatever order the transactions
// ran in. Several customers at once, so that the interleavings vary.
func TestWebhookConcurrentOutOfOrder(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	const customers = 6
	type burst struct {
		user uuid.UUID
		ids  []string
	}
	var bursts []burst
	var payloads [][]byte
	for range customers {
		user, cus := d.customer(t)
		final := subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro)
		final["cancel_at_period_end"] = true
		events := []struct {
			typ    string
			at     time.Time
			object map[string]any
		}{
			{billing.EventSubscriptionCreated, t0, subscription("sub_1", cus, billing.StatusIncomplete, apitest.StripePricePro)},
			{billing.EventSubscriptionUpdated, t0.Add(time.Minute), subscription("sub_1", cus, billing.StatusPastDue, apitest.StripePricePro)},
			{billing.EventSubscriptionUpdated, t0.Add(2 * time.Minute), final},
		}
		b := burst{user: user}
		for k := len(events) - 1; k >= 0; k-- { // newest first
			id := "evt_" + uuid.NewString()
			b.ids = append(b.ids, id)
			payloads = append(payloads, event(id, events[k].typ, events[k].at, events[k].object))
		}
		bursts = append(bursts, b)
	}
	d.deliverAll(t, payloads)

	for _, b := range bursts {
		sub := d.subscription(t, b.user)
		if sub.Plan != plan.Pro || sub.Status != billing.StatusActive || !sub.CancelAtPeriodEnd || !sub.PastDueSince.IsZero() {
			t.Errorf("user %s after the burst: %+v; want the newest event's state: pro, active, cancel at period end, not past due", b.user, sub)
		}
		// The newest was applied; each older one applied before it or was
		// found stale, and every one is recorded once.
		if got := outcomes(t, d.logs, b.ids[0]); got[string(billing.Applied)] != 1 {
			t.Errorf("newest event: outcomes %v, want applied", got)
		}
		for _, id := range b.ids {
			if n := d.recorded(t, id); n != 1 {
				t.Errorf("event %s recorded %d times, want once", id, n)
			}
		}
	}
}

// TestWebhookLate: Stripe retries an event for up to three days, signing
// each delivery as it sends it. A delivery whose signature is older than
// the tolerance (a capture played back) is refused with 400 and records
// nothing; an event created days ago but delivered now applies when
// nothing newer has, and once a newer one has it is acknowledged (200)
// and changes nothing.
func TestWebhookLate(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	ctx := t.Context()
	user, cus := d.customer(t)
	now := time.Now().Truncate(time.Second)

	// Three days late, nothing newer: applied.
	oldID := "evt_" + uuid.NewString()
	old := event(oldID, billing.EventSubscriptionCreated, now.Add(-72*time.Hour), subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro))
	if code, err := d.deliver(ctx, 0, old, time.Now()); err != nil || code != http.StatusOK {
		t.Fatalf("an event created 3 days ago, delivered now: %d, %v; want 200", code, err)
	}
	if sub := d.subscription(t, user); sub.Plan != plan.Pro || sub.Status != billing.StatusActive {
		t.Fatalf("after the late event: %+v, want pro, active", sub)
	}

	// A newer event, then a late one created between the two.
	newerID := "evt_" + uuid.NewString()
	newer := subscription("sub_1", cus, billing.StatusActive, apitest.StripePricePro)
	newer["cancel_at_period_end"] = true
	if code, err := d.deliver(ctx, 1, event(newerID, billing.EventSubscriptionUpdated, now.Add(-time.Hour), newer), time.Now()); err != nil || code != http.StatusOK {
		t.Fatalf("the newer event: %d, %v", code, err)
	}
	lateID := "evt_" + uuid.NewString()
	late := event(lateID, billing.EventSubscriptionUpdated, now.Add(-48*time.Hour), subscription("sub_1", cus, billing.StatusPastDue, apitest.StripePricePro))
	if code, err := d.deliver(ctx, 0, late, time.Now()); err != nil || code != http.StatusOK {
		t.Fatalf("a late event older than the state: %d, %v; want 200 so Stripe stops retrying", code, err)
	}
	if got := outcomes(t, d.logs, lateID); got[string(billing.Stale)] != 1 || len(got) != 1 {
		t.Errorf("late event's outcomes %v, want stale", got)
	}
	if sub := d.subscription(t, user); sub.Status != billing.StatusActive || !sub.CancelAtPeriodEnd {
		t.Errorf("after the late event: %+v, want the newer event's state", sub)
	}

	// A delivery signed beyond the tolerance is a capture: refused on
	// either instance, nothing recorded, nothing changed, and so Stripe's
	// own (freshly signed) retry of it still applies.
	captured := "evt_" + uuid.NewString()
	canceled := event(captured, billing.EventSubscriptionDeleted, now, subscription("sub_1", cus, billing.StatusCanceled, apitest.StripePricePro))
	for i := range 2 {
		code, err := d.deliver(ctx, i, canceled, time.Now().Add(-webhook.DefaultTolerance-time.Minute))
		if err != nil || code != http.StatusBadRequest {
			t.Errorf("a delivery signed %v ago, to instance %d: %d, %v; want 400", webhook.DefaultTolerance+time.Minute, i, code, err)
		}
	}
	if n := d.recorded(t, captured); n != 0 {
		t.Errorf("a refused delivery recorded the event %d times", n)
	}
	if sub := d.subscription(t, user); sub.Plan != plan.Pro || sub.Status != billing.StatusActive {
		t.Errorf("after the refused deliveries: %+v, want unchanged", sub)
	}
	if code, err := d.deliver(ctx, 1, canceled, time.Now()); err != nil || code != http.StatusOK {
		t.Fatalf("the same event signed now: %d, %v", code, err)
	}
	if sub := d.subscription(t, user); sub.Plan != plan.Free || sub.Status != billing.StatusCanceled {
		t.Errorf("after the retry: %+v, want free, canceled", sub)
	}
}

package stripeapi_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v84/webhook"

	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/stripeapi"
)

// recorder is an EventHandler that keeps what reaches it: the fuzz target
// is the webhook's signature check and decoding, in front of billing
// (whose handling of events TestWebhook runs against the database).
type recorder struct{ events []billing.Event }

func (r *recorder) HandleEvent(_ context.Context, e billing.Event) (billing.Outcome, error) {
	r.events = append(r.events, e)
	return billing.Applied, nil
}

// FuzzWebhook: any body with any Stripe-Signature header is answered
// without panicking; only a body signed with the endpoint's secret reaches
// billing, and a signed body that is not an event Parley knows answers 400
// or is ignored, never 500 from decoding.
func FuzzWebhook(f *testing.F) {
	const secret = "whsec_fuzz"
	f.Add(event("evt_1", "customer.subscription.updated", time.Unix(1_700_000_000, 0), subscription("sub_1", "cus_1", "active", "price_pro")), "", true)
	f.Add(event("evt_2", "invoice.paid", time.Unix(1_700_000_000, 0), invoice("cus_1", "sub_1")), "", true)
	f.Add([]byte(`{"id":"evt_3","object":"event","type":"customer.subscription.deleted","data":{"object":{"id":5}}}`), "", true)
	f.Add([]byte(`{}`), "t=1,v1=00", false)
	f.Add([]byte(`not json`), "", true)
	f.Fuzz(func(t *testing.T, payload []byte, header string, sign bool) {
		if sign {
			header = webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()}).Header
		}
		rec := &recorder{}
		h := stripeapi.NewWebhook(secret, rec, slog.New(slog.DiscardHandler))
		req := httptest.NewRequest(http.MethodPost, stripeapi.WebhookPath, bytes.NewReader(payload))
		req.Header.Set("Stripe-Signature", header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case !sign && w.Code != http.StatusBadRequest:
			t.Fatalf("an unsigned body answered %d; want 400", w.Code)
		case !sign && len(rec.events) > 0:
			t.Fatal("an unsigned body reached billing")
		case w.Code == http.StatusOK && len(rec.events) != 1:
			t.Fatalf("200 with %d events handled", len(rec.events))
		case w.Code != http.StatusOK && w.Code != http.StatusBadRequest:
			t.Fatalf("status %d for %q", w.Code, payload)
		}
	})
}

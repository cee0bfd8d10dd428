package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v84"
	"github.com/stripe/stripe-go/v84/webhook"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/billing"
)

// WebhookPath is where Stripe sends events; register it as the endpoint's
// URL (PUBLIC_URL + WebhookPath) with the API version stripe-go expects
// (stripe.APIVersion), or every event is refused.
const WebhookPath = "/webhooks/stripe"

// MaxWebhookBody caps an event's body. Stripe's events are a few KB; a
// subscription with many items stays well under this.
const MaxWebhookBody = 256 << 10

// readTimeout bounds the time to read an event's body.
const readTimeout = 10 * time.Second

// handleTimeout bounds the work for one event once it is verified. It
// runs without the request's cancellation: Stripe gives up after about
// 20 s, but an event half-applied is never the result, since the store
// commits it whole or not at all.
const handleTimeout = 10 * time.Second

// EventHandler applies a verified event (billing.Service does).
type EventHandler interface {
	HandleEvent(ctx context.Context, e billing.Event) (billing.Outcome, error)
}

// Webhook is the endpoint Stripe posts events to. It answers 400 for a
// body that is too large, unsigned, signed with another secret, older
// than stripe-go's tolerance (5 minutes) or of another API version, and
// changes nothing then; 200 for an event handled, handled before, stale
// or of a type nothing handles; 500 when saving failed, so Stripe sends
// it again.
type Webhook struct {
	secret  string
	handler EventHandler
	log     *slog.Logger
}

// NewWebhook returns the endpoint; secret is STRIPE_WEBHOOK_SECRET.
func NewWebhook(secret string, handler EventHandler, log *slog.Logger) *Webhook {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhook{secret: secret, handler: handler, log: log}
}

// ServeHTTP implements http.Handler.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Outside the Connect API nothing else bounds a slow body.
	_ = http.NewResponseController(rw).SetReadDeadline(time.Now().Add(readTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxWebhookBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(rw, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "cannot read body", http.StatusBadRequest)
		return
	}
	ev, err := webhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), w.secret)
	if err != nil {
		// The reason goes to the log only: a caller probing the endpoint
		// learns nothing from the answer.
		w.log.WarnContext(ctx, "stripe webhook refused", "err", err)
		http.Error(rw, "invalid signature", http.StatusBadRequest)
		return
	}
	e, err := decode(ev)
	if err != nil {
		w.log.ErrorContext(ctx, "stripe event not decoded", "event_id", ev.ID, "type", string(ev.Type), "err", err)
		http.Error(rw, "invalid event", http.StatusBadRequest)
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		// The delivery's span (when tracing is on) says which event it was.
		span.SetAttributes(attribute.String("stripe.event.id", e.ID), attribute.String("stripe.event.type", e.Type))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
	defer cancel()
	if _, err := w.handler.HandleEvent(ctx, e); err != nil {
		w.log.ErrorContext(ctx, "stripe event not applied", "event_id", e.ID, "type", e.Type, "err", err)
		http.Error(rw, "not applied; send it again", http.StatusInternalServerError)
		return
	}
	rw.WriteHeader(http.StatusOK)
}

// decode reads the fields billing needs from the event's object.
func decode(ev stripe.Event) (billing.Event, error) {
	e := billing.Event{ID: ev.ID, Type: string(ev.Type), Time: time.Unix(ev.Created, 0).UTC()}
	if ev.Data == nil {
		return e, nil
	}
	switch e.Type {
	case billing.EventCheckoutCompleted:
		var s stripe.CheckoutSession
		if err := json.Unmarshal(ev.Data.Raw, &s); err != nil {
			return e, err
		}
		e.Checkout = &billing.CheckoutSession{ClientReferenceID: s.ClientReferenceID, Mode: string(s.Mode)}
		if s.Customer != nil {
			e.Checkout.CustomerID = s.Customer.ID
		}
		if s.Subscription != nil {
			e.Checkout.SubscriptionID = s.Subscription.ID
		}
	case billing.EventSubscriptionCreated, billing.EventSubscriptionUpdated, billing.EventSubscriptionDeleted:
		var s stripe.Subscription
		if err := json.Unmarshal(ev.Data.Raw, &s); err != nil {
			return e, err
		}
		sub := &billing.StripeSubscription{ID: s.ID, Status: string(s.Status), CancelAtPeriodEnd: s.CancelAtPeriodEnd}
		if s.Customer != nil {
			sub.CustomerID = s.Customer.ID
		}
		if s.Items != nil {
			for _, item := range s.Items.Data {
				if item.Price != nil {
					sub.PriceIDs = append(sub.PriceIDs, item.Price.ID)
				}
				// The period is per item since API version 2025-03-31.
				if end := time.Unix(item.CurrentPeriodEnd, 0).UTC(); item.CurrentPeriodEnd > 0 && end.After(sub.CurrentPeriodEnd) {
					sub.CurrentPeriodEnd = end
				}
			}
		}
		e.Subscription = sub
	case billing.EventInvoicePaymentFailed:
		var inv stripe.Invoice
		if err := json.Unmarshal(ev.Data.Raw, &inv); err != nil {
			return e, err
		}
		f := &billing.InvoicePaymentFailed{}
		if inv.Customer != nil {
			f.CustomerID = inv.Customer.ID
		}
		if p := inv.Parent; p != nil && p.SubscriptionDetails != nil && p.SubscriptionDetails.Subscription != nil {
			f.SubscriptionID = p.SubscriptionDetails.Subscription.ID
		}
		e.PaymentFailed = f
	}
	return e, nil
}

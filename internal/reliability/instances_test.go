package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v84"
	"github.com/stripe/stripe-go/v84/webhook"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/stripeapi"
	"github.com/parleyhq/parley/internal/stripetest"
)

// TestThreeInstances: three parley serve processes share one PostgreSQL
// and one Redis behind a client that spreads its calls over them. Limits
// and quotas are shared, a stop and a resume reach an answer running on another
// instance, agent steps run exactly once, and a plan change made on one
// instance applies on every other at once.
func TestThreeInstances(t *testing.T) {
	c := newCluster(t, options{Instances: 3, Env: []string{
		"MAX_CONCURRENT_GENERATIONS", "2",
		"PLAN_FREE_MONTHLY_TOKENS", "5000",
		"STRIPE_SECRET_KEY", "sk_test_parley",
		"STRIPE_API_BASE", stripetest.Start(t).URL,
		"STRIPE_WEBHOOK_SECRET", apitest.StripeWebhookSecret,
		"STRIPE_PRICE_PRO", apitest.StripePricePro,
		"CHECKOUT_SUCCESS_URL", apitest.CheckoutSuccessURL,
		"CHECKOUT_CANCEL_URL", apitest.CheckoutCancelURL,
	}})
	ctx := testContext(t, 3*time.Minute)
	whole := strings.Join(llmtest.DefaultChunks, "")

	t.Run("ConcurrencyCapShared", func(t *testing.T) {
		c.Model.Configure(llmtest.Hold())
		defer c.Model.Unhold()
		token := c.Supabase.Token(t, newUser())
		var running []*answer
		for i := range 2 {
			chat := c.Chat(i, token)
			running = append(running, send(t, ctx, chat, conversation(t, ctx, chat), "Hold on."))
		}
		third := c.Chat(2, token)
		s, err := third.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conversation(t, ctx, third), Content: "One more."}))
		if err == nil {
			for s.Receive() {
			}
			err = s.Err()
		}
		if connect.CodeOf(err) != connect.CodeResourceExhausted || strings.Contains(err.Error(), "quota") {
			t.Errorf("a third answer on parley-2 while parley-0 and parley-1 run two: %v, want resource_exhausted for the concurrency cap", err)
		}
		c.Model.Release(1 << 10)
		for _, a := range running {
			a.drain(t)
			if a.Completed == nil {
				t.Errorf("a held answer ended with %v", a.Err)
			}
		}
	})

	t.Run("QuotaShared", func(t *testing.T) {
		// Each answer costs 4,000 of the free plan's 5,000 tokens a month.
		c.Model.Configure(llmtest.Usage(2000, 2000))
		defer c.Model.Configure(llmtest.Usage(0, 0))
		token := c.Supabase.Token(t, newUser())
		first := c.Chat(0, token)
		a := send(t, ctx, first, conversation(t, ctx, first), "Spend.")
		a.drain(t)
		if a.Completed == nil {
			t.Fatalf("the first answer: %v", a.Err)
		}
		for _, i := range []int{1, 2} {
			other := c.Chat(i, token)
			s, err := other.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conversation(t, ctx, other), Content: "More."}))
			if err == nil {
				for s.Receive() {
				}
				err = s.Err()
			}
			if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "quota") {
				t.Errorf("an answer on %s after parley-0 spent the quota: %v, want resource_exhausted for the quota", c.Inst[i].name, err)
			}
		}
	})

	t.Run("StopAndResumeAcrossInstances", func(t *testing.T) {
		c.Model.Configure(llmtest.Hold())
		defer c.Model.Unhold()
		user := newUser()
		token := c.Supabase.Token(t, user)
		conv := conversation(t, ctx, c.Chat(0, token))
		ans := send(t, ctx, c.Chat(0, token), conv, "Tell me something.")
		c.Model.Release(2)
		partial := strings.Join(llmtest.DefaultChunks[:2], "")
		ans.until(t, len(partial))
		follower := resume(t, ctx, c.Chat(1, token), ans.GenerationID, 0)
		follower.until(t, len(partial))
		res, err := c.Chat(2, token).StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: ans.GenerationID}))
		if err != nil {
			t.Fatalf("StopGeneration on parley-2: %v", err)
		}
		if res.Msg.Message.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || res.Msg.Message.Content != partial {
			t.Errorf("StopGeneration answered %q (%s), want %q stopped", res.Msg.Message.Content, res.Msg.Message.Status, partial)
		}
		ans.drain(t)
		follower.drain(t)
		for who, a := range map[string]*answer{"sender on parley-0": ans, "follower on parley-1": follower} {
			if a.Completed == nil || a.Completed.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || a.Text() != partial {
				t.Errorf("%s: %q, %v (%v); want %q then completed as stopped", who, a.Text(), a.Completed.GetStatus(), a.Err, partial)
			}
		}
		if m := c.saved(t, user, ans.AnswerID); m.Status != chat.StatusStopped || m.Content != partial {
			t.Errorf("saved %q (%s), want %q stopped", m.Content, m.Status, partial)
		}
	})

	t.Run("AgentStepsExactlyOnce", func(t *testing.T) {
		c.Model.Configure(llmtest.Respond(stepScript))
		defer c.Model.Configure(llmtest.Respond(nil))
		runs := scale(3, 30)
		var wg sync.WaitGroup
		for n := range runs {
			wg.Go(func() {
				token := c.Supabase.Token(t, newUser())
				goal := fmt.Sprintf("exactly-once-%d;", n)
				id := startRun(t, ctx, c.Agent(n%3, token), goal)
				run := watchRun(t, ctx, c.Agent((n+1)%3, token), id)
				wantRanOnce(t, run, stepRequests(c.Model, goal), nil)
			})
		}
		wg.Wait()
	})

	t.Run("PlanChangeReachesEveryInstance", func(t *testing.T) {
		user := newUser()
		token := c.Supabase.Token(t, user)
		for i := range c.Inst {
			if got := planOn(t, c.User(i, token)); got != plan.Free {
				t.Fatalf("a new user's plan on %s: %q, want free", c.Inst[i].name, got)
			}
		}
		billingClient := parleyv1connect.NewBillingServiceClient(c.http[protocol(0)], c.Inst[0].URL, c.opts(0, token)...)
		if _, err := billingClient.CreateCheckoutSession(ctx, connect.NewRequest(&parleyv1.CreateCheckoutSessionRequest{Plan: plan.Pro})); err != nil {
			t.Fatalf("checkout on parley-0: %v", err)
		}
		sub, err := c.Store.Subscription(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		postStripe(t, c.Inst[1].URL, billing.EventSubscriptionCreated, map[string]any{
			"id": "sub_" + uuid.NewString(), "object": "subscription", "customer": sub.CustomerID, "status": billing.StatusActive,
			"cancel_at_period_end": false,
			"items": map[string]any{"object": "list", "data": []any{map[string]any{
				"id": "si_1", "object": "subscription_item", "current_period_end": time.Now().AddDate(0, 1, 0).Unix(),
				"price": map[string]any{"id": apitest.StripePricePro, "object": "price"},
			}}},
		})
		for i := range c.Inst {
			took := eventually(t, 5*time.Second, func() error {
				if got := planOn(t, c.User(i, token)); got != plan.Pro {
					return fmt.Errorf("%s applies %q", c.Inst[i].name, got)
				}
				return nil
			})
			t.Logf("%s applied the new plan %v after the webhook", c.Inst[i].name, took.Round(time.Millisecond))
		}
	})

	// Every instance still answers whole.
	for i := range c.Inst {
		chat := c.Chat(i, c.Supabase.Token(t, newUser()))
		a := send(t, ctx, chat, conversation(t, ctx, chat), "Hello?")
		a.drain(t)
		if a.Completed == nil || a.Text() != whole {
			t.Errorf("%s at the end: %q (%v)", c.Inst[i].name, a.Text(), a.Err)
		}
	}
}

// planOn is the user's plan name as instance c applies it.
func planOn(tb testing.TB, c parleyv1connect.UserServiceClient) string {
	tb.Helper()
	res, err := c.GetMe(tb.Context(), connect.NewRequest(&parleyv1.GetMeRequest{}))
	if err != nil {
		tb.Fatalf("GetMe: %v", err)
	}
	return res.Msg.GetPlan().GetName()
}

// postStripe delivers a Stripe event, signed as Stripe signs it, to the
// instance at base and wants 200.
func postStripe(tb testing.TB, base, typ string, object map[string]any) {
	tb.Helper()
	payload, err := json.Marshal(map[string]any{
		"id": "evt_" + uuid.NewString(), "object": "event", "api_version": stripe.APIVersion, "type": typ,
		"created": time.Now().Unix(), "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": object},
	})
	if err != nil {
		tb.Fatal(err)
	}
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: apitest.StripeWebhookSecret, Timestamp: time.Now()})
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodPost, base+stripeapi.WebhookPath, bytes.NewReader(payload))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signed.Header)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("POST %s: %d, want 200", stripeapi.WebhookPath, res.StatusCode)
	}
}

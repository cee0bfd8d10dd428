package rpc_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/billing"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/stripetest"
)

func checkout(t *testing.T, env *apitest.Env, protocol string, user uuid.UUID, planName string) (string, error) {
	t.Helper()
	res, err := env.BillingClient(t, protocol, user).CreateCheckoutSession(testCtx(t), connect.NewRequest(&parleyv1.CreateCheckoutSessionRequest{Plan: planName}))
	if err != nil {
		return "", err
	}
	return res.Msg.Url, nil
}

// TestBilling: checkout and the billing portal against stripe-mock, over
// every protocol.
func TestBilling(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{StripeURL: stripetest.Start(t).URL})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			t.Run("CheckoutOK", func(t *testing.T) {
				user := uuid.New()
				url, err := checkout(t, env, protocol, user, plan.Pro)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(url, "https://checkout.stripe.com/") {
					t.Errorf("checkout URL %q, want Stripe Checkout's", url)
				}
				first, err := env.Store.Subscription(t.Context(), user)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(first.CustomerID, "cus_") || first.Plan != plan.Free {
					t.Fatalf("after checkout: %+v, want a customer, still free", first)
				}
				// A second checkout (the first abandoned) keeps the customer.
				if _, err := checkout(t, env, protocol, user, plan.Pro); err != nil {
					t.Fatal(err)
				}
				if again, _ := env.Store.Subscription(t.Context(), user); again.CustomerID != first.CustomerID {
					t.Errorf("second checkout: customer %s, want %s", again.CustomerID, first.CustomerID)
				}
			})
			t.Run("CheckoutRacesMakeOneCustomer", func(t *testing.T) {
				user := uuid.New()
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						if _, err := checkout(t, env, protocol, user, plan.Pro); err != nil {
							t.Error(err)
						}
					})
				}
				wg.Wait()
				if sub, err := env.Store.Subscription(t.Context(), user); err != nil || sub.CustomerID == "" {
					t.Errorf("after racing checkouts: %+v, %v", sub, err)
				}
			})
			t.Run("ErrAnonymous", func(t *testing.T) {
				_, err := env.AnonymousBillingClient(t, protocol, uuid.New()).CreateCheckoutSession(testCtx(t),
					connect.NewRequest(&parleyv1.CreateCheckoutSessionRequest{Plan: plan.Pro}))
				wantCode(t, err, connect.CodeFailedPrecondition, "anonymous users cannot subscribe")
			})
			t.Run("ErrPlanNotOnSale", func(t *testing.T) {
				for _, name := range []string{"", plan.Free, plan.Anonymous, "enterprise"} {
					_, err := checkout(t, env, protocol, uuid.New(), name)
					wantCode(t, err, connect.CodeInvalidArgument, `plan: must be "pro"`)
				}
			})
			t.Run("ErrAlreadySubscribed", func(t *testing.T) {
				user := uuid.New()
				if _, err := checkout(t, env, protocol, user, plan.Pro); err != nil {
					t.Fatal(err)
				}
				sub, _ := env.Store.Subscription(t.Context(), user)
				if _, err := env.Store.ApplyEvent(t.Context(), billing.EventRecord{ID: "evt_" + uuid.NewString(), Type: billing.EventSubscriptionCreated, Time: time.Now()},
					billing.Change{Set: &billing.SubscriptionUpdate{CustomerID: sub.CustomerID, SubscriptionID: "sub_1", Plan: plan.Pro, Status: billing.StatusActive}}); err != nil {
					t.Fatal(err)
				}
				_, err := checkout(t, env, protocol, user, plan.Pro)
				wantCode(t, err, connect.CodeFailedPrecondition, "billing portal")
			})
			t.Run("PortalOK", func(t *testing.T) {
				user := uuid.New()
				if _, err := checkout(t, env, protocol, user, plan.Pro); err != nil {
					t.Fatal(err)
				}
				res, err := env.BillingClient(t, protocol, user).CreateBillingPortalSession(testCtx(t), connect.NewRequest(&parleyv1.CreateBillingPortalSessionRequest{}))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(res.Msg.Url, "https://") {
					t.Errorf("portal URL %q", res.Msg.Url)
				}
			})
			t.Run("ErrPortalBeforeCheckout", func(t *testing.T) {
				_, err := env.BillingClient(t, protocol, uuid.New()).CreateBillingPortalSession(testCtx(t), connect.NewRequest(&parleyv1.CreateBillingPortalSessionRequest{}))
				wantCode(t, err, connect.CodeFailedPrecondition, "subscribe to a plan first")
			})
			t.Run("ErrUnauthenticated", func(t *testing.T) {
				_, err := checkout(t, env, protocol, uuid.Nil, plan.Pro)
				wantCode(t, err, connect.CodeUnauthenticated, "")
			})
		})
	}
}

// TestBillingNotSetUp: without STRIPE_SECRET_KEY both RPCs answer
// failed_precondition, nothing is saved, and no webhook is mounted.
func TestBillingNotSetUp(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			user := uuid.New()
			_, err := checkout(t, env, protocol, user, plan.Pro)
			wantCode(t, err, connect.CodeFailedPrecondition, "billing is not set up")
			_, err = env.BillingClient(t, protocol, user).CreateBillingPortalSession(testCtx(t), connect.NewRequest(&parleyv1.CreateBillingPortalSessionRequest{}))
			wantCode(t, err, connect.CodeFailedPrecondition, "billing is not set up")
			if _, err := env.Store.Subscription(t.Context(), user); !apperr.IsNotFound(err) {
				t.Errorf("Subscription after calls without billing: %v, want not_found (nothing saved)", err)
			}
		})
	}
	res, err := http.Post(env.URL+"/webhooks/stripe", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("POST /webhooks/stripe without billing: %d, want 404", res.StatusCode)
	}
}

// TestUserAndBillingCrossUser: every RPC of UserService and BillingService
// acts on its caller alone. None takes an id: each is called by another
// user, over every protocol, and must neither show nor change the first
// user's profile, data, usage or Stripe customer.
func TestUserAndBillingCrossUser(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{StripeURL: stripetest.Start(t).URL})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			owner, other := uuid.New(), uuid.New()
			name := "Owner " + protocol
			if _, err := env.UserClient(t, protocol, owner).UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{DisplayName: &name})); err != nil {
				t.Fatal(err)
			}
			conv, err := env.ChatClient(t, protocol, owner).CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "owner's secret"}))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := checkout(t, env, protocol, owner, plan.Pro); err != nil {
				t.Fatal(err)
			}
			ownerSub, err := env.Store.Subscription(ctx, owner)
			if err != nil {
				t.Fatal(err)
			}

			users, bill := env.UserClient(t, protocol, other), env.BillingClient(t, protocol, other)
			me, err := users.GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil || me.Msg.GetProfile().GetUserId() != other.String() || me.Msg.GetPreferences().GetDisplayName() != "" {
				t.Errorf("GetMe of the other user: %v, %v", me, err)
			}
			otherName := "Other"
			if _, err := users.UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{DisplayName: &otherName})); err != nil {
				t.Fatal(err)
			}
			if usage, err := users.GetUsage(ctx, connect.NewRequest(&parleyv1.GetUsageRequest{})); err != nil || usage.Msg.GetUsedTokens() != 0 {
				t.Errorf("GetUsage of the other user: %v, %v", usage, err)
			}
			if doc, _ := export(t, users, 0, ""); strings.Contains(string(doc), conv.Msg.GetConversation().GetId()) || strings.Contains(string(doc), "owner's secret") {
				t.Error("the other user's export holds the owner's conversation")
			}
			if _, err := bill.CreateBillingPortalSession(ctx, connect.NewRequest(&parleyv1.CreateBillingPortalSessionRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Errorf("portal for a user who never checked out, while another did: %v, want failed_precondition", err)
			}
			if _, err := checkout(t, env, protocol, other, plan.Pro); err != nil {
				t.Fatal(err)
			}
			if sub, err := env.Store.Subscription(ctx, other); err != nil || sub.CustomerID == "" || sub.CustomerID == ownerSub.CustomerID {
				t.Errorf("the other user's customer %q, the owner's %q: want one each", sub.CustomerID, ownerSub.CustomerID)
			}
			if _, err := users.DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
				t.Fatal(err)
			}

			// The owner has everything as before.
			again, err := env.UserClient(t, protocol, owner).GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil || again.Msg.GetPreferences().GetDisplayName() != name {
				t.Errorf("the owner's profile after the other user's calls: %v, %v", again, err)
			}
			if _, err := env.ChatClient(t, protocol, owner).GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.Msg.GetConversation().GetId()})); err != nil {
				t.Errorf("the owner's conversation after the other user's DeleteMe: %v", err)
			}
			if sub, err := env.Store.Subscription(ctx, owner); err != nil || sub.CustomerID != ownerSub.CustomerID {
				t.Errorf("the owner's subscription after the other user's DeleteMe: %+v, %v", sub, err)
			}
		})
	}
}

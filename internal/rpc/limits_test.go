package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/redistest"
	"github.com/parleyhq/parley/internal/server"
)

var testLimits = server.RateLimits{
	Chat:    ratelimit.PerMinute(2),
	Agent:   ratelimit.PerMinute(1),
	General: ratelimit.PerMinute(3),
}

// limitedPair is two instances sharing the database and a Redis, with
// rate limits on.
func limitedPair(t *testing.T, redisURL string, opts apitest.Options) (a, b *apitest.Env) {
	t.Helper()
	opts.RedisURL, opts.RedisPrefix, opts.RateLimits = redisURL, redistest.Prefix(t), &testLimits
	return apitest.New(t, opts), apitest.New(t, opts)
}

func rateHeaders(t *testing.T, h http.Header) (limit, remaining, reset int) {
	t.Helper()
	for _, prefix := range []string{"", "X-"} {
		for _, name := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
			if h.Get(prefix+name) == "" {
				t.Fatalf("no %s header in %v", prefix+name, h)
			}
		}
	}
	limit, _ = strconv.Atoi(h.Get("RateLimit-Limit"))
	remaining, _ = strconv.Atoi(h.Get("RateLimit-Remaining"))
	reset, _ = strconv.Atoi(h.Get("RateLimit-Reset"))
	return limit, remaining, reset
}

// TestRateLimits: each class has its limit, every answer carries the
// headers, the excess answers resource_exhausted with Retry-After, and the
// count is shared by two instances, over every protocol.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	a, b := limitedPair(t, redistest.URL(t), apitest.Options{})
	ctx := testCtx(t)
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			user := uuid.New()
			ca, cb := a.ChatClient(t, protocol, user), b.ChatClient(t, protocol, user)
			list := &parleyv1.ListConversationsRequest{}

			// general: 3 a minute, shared: 2 on A and 1 on B use it up.
			for i, c := range []struct {
				name string
				call func() (*connect.Response[parleyv1.ListConversationsResponse], error)
			}{
				{"a", func() (*connect.Response[parleyv1.ListConversationsResponse], error) {
					return ca.ListConversations(ctx, connect.NewRequest(list))
				}},
				{"a", func() (*connect.Response[parleyv1.ListConversationsResponse], error) {
					return ca.ListConversations(ctx, connect.NewRequest(list))
				}},
				{"b", func() (*connect.Response[parleyv1.ListConversationsResponse], error) {
					return cb.ListConversations(ctx, connect.NewRequest(list))
				}},
			} {
				res, err := c.call()
				if err != nil {
					t.Fatalf("call %d on %s: %v", i, c.name, err)
				}
				limit, remaining, reset := rateHeaders(t, res.Header())
				if limit != 3 || remaining != 2-i || reset < 1 || reset > 60 {
					t.Errorf("call %d: limit %d remaining %d reset %d", i, limit, remaining, reset)
				}
			}
			_, err := ca.ListConversations(ctx, connect.NewRequest(list))
			wantCode(t, err, connect.CodeResourceExhausted, "rate limit")
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatal(err)
			}
			if retry, _ := strconv.Atoi(ce.Meta().Get("Retry-After")); retry < 1 || retry > 20 {
				t.Errorf("Retry-After = %q, want 1..20 seconds", ce.Meta().Get("Retry-After"))
			}
			if _, remaining, _ := rateHeaders(t, ce.Meta()); remaining != 0 {
				t.Errorf("remaining %d when limited", remaining)
			}

			// A failed call carries the headers too (another user, fresh budget).
			_, err = a.ChatClient(t, protocol, uuid.New()).GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: uuid.NewString()}))
			wantCode(t, err, connect.CodeNotFound, "")
			if errors.As(err, &ce) {
				if limit, remaining, _ := rateHeaders(t, ce.Meta()); limit != 3 || remaining != 2 {
					t.Errorf("not_found answer: limit %d remaining %d", limit, remaining)
				}
			}

			// chat has its own budget (2): not used up by the general calls.
			conv, err := a.Store.CreateConversation(ctx, user, chat.NewConversation{Title: "limits"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				stream, err := cb.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.ID.String(), Content: "hi"}))
				if err == nil {
					_, err = collect(t, stream, 1)
				}
				if i < 2 && err != nil {
					t.Fatalf("chat call %d: %v", i, err)
				}
				if i < 2 {
					if limit, remaining, _ := rateHeaders(t, stream.ResponseHeader()); limit != 2 || remaining != 1-i {
						t.Errorf("chat call %d: limit %d remaining %d", i, limit, remaining)
					}
				}
				if i == 2 {
					wantCode(t, err, connect.CodeResourceExhausted, "chat")
				}
			}
			// Another user is not affected.
			if _, err := ca.ListConversations(ctx, connect.NewRequest(list)); err == nil {
				t.Fatal("still limited: test is wrong")
			}
			if _, err := a.ChatClient(t, protocol, uuid.New()).ListConversations(ctx, connect.NewRequest(list)); err != nil {
				t.Errorf("another user is limited too: %v", err)
			}
		})
	}
}

// TestRateLimitsPlanMultiplier: a plan's multiplier scales the limits.
func TestRateLimitsPlanMultiplier(t *testing.T) {
	t.Parallel()
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 2}}
	env := apitest.New(t, apitest.Options{RateLimits: &testLimits, Plans: plans})
	c := env.ChatClient(t, "connect+json", uuid.New())
	res, err := c.ListConversations(testCtx(t), connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if limit, _, _ := rateHeaders(t, res.Header()); limit != 6 {
		t.Errorf("limit %d, want 3 × 2", limit)
	}
}

// TestRateLimitsByClientIP: unauthenticated calls count per client IP, as
// Cloud Run's front end reports it in the last X-Forwarded-For hop; what a
// client writes in front of it does not matter.
func TestRateLimitsByClientIP(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{RateLimits: &testLimits, TrustedProxyHops: 1})
	var xff string // the X-Forwarded-For of the next call
	setXFF := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("X-Forwarded-For", xff)
			return next(ctx, req)
		}
	})
	health := grpchealth.NewClient(env.HTTPClient, env.URL, connect.WithGRPC(), connect.WithInterceptors(setXFF))
	check := func(forwarded string) error {
		xff = forwarded
		_, err := health.Check(context.Background(), &grpchealth.CheckRequest{})
		return err
	}
	for i := range 3 {
		// A forged first hop changes on every call; the real one does not.
		if err := check(uuid.NewString()[:8] + ", 203.0.113.7"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := check("198.51.100.1, 203.0.113.7"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("4th call from 203.0.113.7: %v, want resource_exhausted", err)
	}
	if err := check("203.0.113.8"); err != nil {
		t.Errorf("another client IP is limited: %v", err)
	}
}

// TestRateLimitsRedisOutage: with Redis stopped, general calls keep
// succeeding (fail open), chat calls are limited per instance, nothing
// answers internal; once Redis is back the count is shared again.
func TestRateLimitsRedisOutage(t *testing.T) {
	t.Parallel()
	redisSrv := redistest.Start(t)
	// The limiters' cool-down after a Redis failure runs on this clock, so
	// the test steps past it instead of sleeping.
	clk := clock.NewFake(time.Now())
	a, b := limitedPair(t, redisSrv.URL, apitest.Options{Clock: clk})
	ctx := testCtx(t)
	user := uuid.New()
	ca, cb := a.ChatClient(t, "connect+json", user), b.ChatClient(t, "grpc", user)
	conv, err := a.Store.CreateConversation(ctx, user, chat.NewConversation{Title: "outage"})
	if err != nil {
		t.Fatal(err)
	}

	redisSrv.Stop()
	for i := range 6 {
		if _, err := ca.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.ID.String()})); err != nil {
			t.Fatalf("general call %d during the outage: %v", i, err)
		}
	}
	var allowed int
	for range 3 {
		stream, err := ca.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.ID.String(), Content: "hi"}))
		if err == nil {
			_, err = collect(t, stream, 1)
		}
		switch connect.CodeOf(err) {
		case connect.CodeResourceExhausted:
		case connect.CodeUnavailable:
			// The generation's Redis event log is down too; the limiter let it through.
			allowed++
		default:
			if err != nil {
				t.Fatalf("chat during the outage: %v", err)
			}
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("%d of 3 chat calls passed the in-memory limit of 2", allowed)
	}

	redisSrv.Restart()
	list := &parleyv1.ListConversationsRequest{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Wait until A counts in Redis again: B then sees A's calls.
		_, errA := ca.ListConversations(ctx, connect.NewRequest(list))
		res, errB := cb.ListConversations(ctx, connect.NewRequest(list))
		if errA == nil && errB == nil {
			if _, remaining, _ := rateHeaders(t, res.Header()); remaining == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("limits not shared 15s after Redis came back: %v %v", errA, errB)
		}
		// Past the cool-down; a fresh user has a fresh count. The short
		// pause only paces the wait for redis-server and go-redis to
		// reconnect, which no clock drives.
		clk.Advance(time.Second + time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		user = uuid.New()
		ca, cb = a.ChatClient(t, "connect+json", user), b.ChatClient(t, "grpc", user)
	}
}

// TestConcurrentGenerations: a user may have at most MaxConcurrent answers
// streaming, across instances.
func TestConcurrentGenerations(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	opts := apitest.Options{Generator: chat.GeneratorConfig{MaxConcurrent: 2}}
	a := fakeEnv(t, fake, opts)
	b := fakeEnv(t, fake, opts)
	ctx := testCtx(t)
	user := uuid.New()
	ca, cb := a.ChatClient(t, "grpc", user), b.ChatClient(t, "connect+json", user)
	var gens []string
	for _, c := range []*apitest.Env{a, b} {
		conv := create(t, c.ChatClient(t, "grpc", user), "busy")
		stream, err := send(ctx, c.ChatClient(t, "grpc", user), conv.Id, "hi")
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, next(t, stream).GetStarted().GenerationId)
	}
	conv := create(t, ca, "third")
	_, err := collectErr(send(ctx, cb, conv.Id, "hi"))
	wantCode(t, err, connect.CodeResourceExhausted, "at most 2 answers")
	if msgs := messages(t, cb, conv.Id); len(msgs) != 0 {
		t.Errorf("a refused send saved %d messages", len(msgs))
	}
	// Stopping one frees its slot.
	if _, err := ca.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: gens[0]})); err != nil {
		t.Fatal(err)
	}
	stream, err := send(ctx, cb, conv.Id, "now?")
	if err != nil {
		t.Fatal(err)
	}
	if next(t, stream).GetStarted() == nil {
		t.Error("no slot after a stop")
	}
}

// TestQuotaRace: generations racing for the last tokens of a quota get
// exactly what fits; the rest answer resource_exhausted with the reset time.
func TestQuotaRace(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold(), llmtest.Usage(10, 20))
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: 350}}
	gen := chat.GeneratorConfig{MaxConcurrent: 100, OutputReserve: 100}
	a := fakeEnv(t, fake, apitest.Options{Plans: plans, Generator: gen})
	b := fakeEnv(t, fake, apitest.Options{Plans: plans, Generator: gen})
	ctx := testCtx(t)
	user := uuid.New()

	// Each send reserves 100 + 1 ("hi") tokens: 3 fit in 350.
	const racers = 8
	var wg sync.WaitGroup
	results := make(chan error, racers)
	streams := make(chan string, racers)
	for i := range racers {
		env := []*apitest.Env{a, b}[i%2]
		c := env.ChatClient(t, apitest.Protocols[i%len(apitest.Protocols)], user)
		conv := create(t, c, "race")
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := send(ctx, c, conv.Id, "hi")
			if err == nil && stream.Receive() {
				streams <- stream.Msg().GetStarted().GenerationId
				go collect(t, stream, 2)
				results <- nil
				return
			}
			if err == nil {
				err = stream.Err()
			}
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	var ok, exhausted int
	for err := range results {
		switch {
		case err == nil:
			ok++
		case connect.CodeOf(err) == connect.CodeResourceExhausted:
			exhausted++
			var ce *connect.Error
			if errors.As(err, &ce) && ce.Meta().Get("Retry-After") == "" {
				t.Error("quota error without Retry-After")
			}
			wantCode(t, err, connect.CodeResourceExhausted, "resets at")
		default:
			t.Errorf("racer: %v", err)
		}
	}
	if ok != 3 || exhausted != racers-3 {
		t.Fatalf("%d succeeded and %d were refused, want 3 and %d", ok, exhausted, racers-3)
	}
	usage, err := a.Store.TokenUsage(ctx, user, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if usage.Reserved != 3*101 || usage.Active != 3 || usage.Used != 0 {
		t.Errorf("while streaming: %+v", usage)
	}

	// Settled with the real usage (10 + 20 each) when they end.
	fake.Release(3 * len(llmtest.DefaultChunks))
	deadline := time.Now().Add(10 * time.Second)
	for {
		usage, err = a.Store.TokenUsage(ctx, user, time.Now())
		if err == nil && usage.Active == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never settled: %+v %v", usage, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if usage.Used != 3*30 || usage.Reserved != 0 {
		t.Errorf("after settling: %+v, want used 90, reserved 0", usage)
	}
	close(streams)
}

// TestPlanModels: a plan limited to some models refuses the others.
func TestPlanModels(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t)
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, Models: []string{"cheap-model"}}}
	env := fakeEnv(t, fake, apitest.Options{Plans: plans})
	c := env.ChatClient(t, "connect+json", uuid.New())
	conv := create(t, c, "models")
	_, err := collectErr(send(testCtx(t), c, conv.Id, "hi"))
	wantCode(t, err, connect.CodePermissionDenied, "free plan")
}

// TestReadYourWritesAcrossInstances: after a user's write on one instance,
// the user's next read on another sees it (the Node design cached lists for
// five minutes and never invalidated them). Reads also work as HTTP GET.
func TestReadYourWritesAcrossInstances(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, llmtest.NewServer(t), time.Minute)
	ctx := testCtx(t)
	user := uuid.New()
	ca := a.ChatClient(t, "connect+json", user)
	cb := parleyv1connectClientWithGET(t, b, user)
	conv := create(t, ca, "before")
	if _, err := cb.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{})); err != nil {
		t.Fatal(err)
	}
	title := "after"
	if _, err := ca.UpdateConversation(ctx, connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: conv.Id, Title: &title})); err != nil {
		t.Fatal(err)
	}
	got, err := cb.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.Id}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Msg.Conversation.Title != "after" {
		t.Errorf("instance B reads %q after the write on A", got.Msg.Conversation.Title)
	}
	list, err := cb.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil || len(list.Msg.Conversations) != 1 || list.Msg.Conversations[0].Title != "after" {
		t.Errorf("instance B lists %v (%v)", list, err)
	}
	create(t, ca, "new one")
	list, err = cb.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil || len(list.Msg.Conversations) != 2 {
		t.Errorf("instance B does not list the new conversation: %v (%v)", list, err)
	}
}

// parleyv1connectClientWithGET is a Connect client that sends the
// NO_SIDE_EFFECTS RPCs as HTTP GET, as browsers may to use HTTP caches.
func parleyv1connectClientWithGET(t *testing.T, env *apitest.Env, user uuid.UUID) parleyv1connect.ChatServiceClient {
	t.Helper()
	return parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor("connect+json"), env.URL,
		connect.WithProtoJSON(), connect.WithHTTPGet(), connect.WithInterceptors(apitest.Bearer(env.Token(t, user)), getOnly{t}))
}

// getOnly fails the test if a read is not sent as GET.
type getOnly struct{ t *testing.T }

func (g getOnly) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if req.Spec().IdempotencyLevel == connect.IdempotencyNoSideEffects && req.HTTPMethod() != http.MethodGet {
			g.t.Errorf("%s sent as %s, want GET", req.Spec().Procedure, req.HTTPMethod())
		}
		return res, err
	}
}

func (g getOnly) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (g getOnly) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// TestAuthFailureFlood: a client IP that keeps sending bad tokens is
// refused before any token check; other addresses are not affected.
func TestAuthFailureFlood(t *testing.T) {
	t.Parallel()
	limits := testLimits
	limits.AuthFailures = ratelimit.PerMinute(3)
	env := apitest.New(t, apitest.Options{RateLimits: &limits, TrustedProxyHops: 1})
	ctx := testCtx(t)
	var xff string
	setXFF := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("X-Forwarded-For", xff)
			return next(ctx, req)
		}
	})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			forged := parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor(protocol), env.URL,
				append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer("not.a.token"), setXFF))...)
			attacker := "203.0.113." + strconv.Itoa(len(protocol)+10)
			xff = attacker
			for i := range 3 {
				_, err := forged.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
				if connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Fatalf("bad token %d: %v, want unauthenticated", i, err)
				}
			}
			_, err := forged.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			wantCode(t, err, connect.CodeResourceExhausted, "invalid access tokens")
			var ce *connect.Error
			if errors.As(err, &ce) && ce.Meta().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			xff = "198.51.100." + strconv.Itoa(len(protocol)+10) // another client
			_, err = forged.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			wantCode(t, err, connect.CodeUnauthenticated, "")

			// A user behind the flooding address whose token is already
			// known keeps working.
			user := uuid.New()
			good := parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor(protocol), env.URL,
				append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer(env.Token(t, user)), setXFF))...)
			if _, err := good.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{})); err != nil {
				t.Fatalf("a known user from another address: %v", err)
			}
			xff = attacker
			if _, err := good.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{})); err != nil {
				t.Errorf("a known user behind the flooding address was refused: %v", err)
			}
		})
	}
}

// TestDeleteDuringAnswer: deleting a conversation while its answer streams
// stops the answer (the upstream request is canceled), ends its stream with
// not_found, and gives back the user's concurrency slot and token
// reservation, charging the text saved so far. Before this, three such
// deletes left a user with a cap of 3 unable to send until the month ended.
func TestDeleteDuringAnswer(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: 1_000_000}}
	env := fakeEnv(t, fake, apitest.Options{Plans: plans, Generator: chat.GeneratorConfig{MaxConcurrent: 1}})
	ctx := testCtx(t)
	user := uuid.New()
	for i, protocol := range apitest.Protocols {
		c := env.ChatClient(t, protocol, user)
		conv := create(t, c, "deleted")
		stream, _, _ := sendPartial(ctx, t, fake, c, conv.Id, "hi", 1)
		if _, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id})); err != nil {
			t.Fatalf("%s: delete: %v", protocol, err)
		}
		_, err := collect(t, stream, 3)
		wantCode(t, err, connect.CodeNotFound, "deleted")
		if !fake.WaitCanceled(i+1, 5*time.Second) {
			t.Errorf("%s: the upstream request was not canceled", protocol)
		}
		usage, err := env.Store.TokenUsage(ctx, user, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if usage.Active != 0 || usage.Reserved != 0 || usage.Used < int64(i+1) {
			t.Errorf("%s: after the delete the account is %+v, want no slot or reservation held and the partial text charged", protocol, usage)
		}
	}
}

// TestAnonymousPlan: anonymous sign-ins (is_anonymous in the token) get the
// anonymous plan's smaller quota and rate limits, on every protocol, so a
// script signing in anonymously again and again gets little each time;
// signed-in users keep the free plan's.
func TestAnonymousPlan(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t)
	plans := plan.Catalog{
		Anonymous: plan.Plan{Name: plan.Anonymous, RateMultiplier: 0.34, MonthlyTokens: 500},
		Free:      plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: 1_000_000},
	}
	env := fakeEnv(t, fake, apitest.Options{Plans: plans, RateLimits: &testLimits})
	ctx := testCtx(t)
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			anonymous := uuid.New()
			token, err := env.Key.SignAnonymous(apitest.Issuer, anonymous, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			ca := parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor(protocol), env.URL,
				append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer(token)))...)
			cf := env.ChatClient(t, protocol, uuid.New())

			// Quota: an answer reserves about 1000 tokens; 500 do not fit.
			conv := create(t, ca, "anonymous")
			_, err = collectErr(send(ctx, ca, conv.Id, "hi"))
			wantCode(t, err, connect.CodeResourceExhausted, "quota of 500 tokens")
			if _, err := collectErr(send(ctx, cf, create(t, cf, "free").Id, "hi")); err != nil {
				t.Errorf("a signed-in user's answer: %v", err)
			}

			// Rate: the general limit of 3 a minute scaled by 0.34 is 1;
			// create above used it.
			_, err = ca.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			wantCode(t, err, connect.CodeResourceExhausted, "")
			if _, err := cf.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{})); err != nil {
				t.Errorf("a signed-in user's list: %v", err)
			}
		})
	}
}

package rpc_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/plan"
)

// TestAskAheadCanceledWhenRefused: the model is asked while the exchange
// is saved; when the save refuses (here: the user's one concurrent answer
// is taken, which only the insert knows), that request is canceled before
// its answer is read, and the refusal reaches the client as before.
func TestAskAheadCanceledWhenRefused(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	calls := &recordingProvider{Provider: llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, APIKey: "sk-test", IdleTimeout: testIdleTimeout})}
	// A plan without a quota: nothing to be wrong about, always asked ahead.
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 1}}
	env := apitest.New(t, apitest.Options{Provider: calls, Models: []string{fakeModel}, Plans: plans, Generator: chat.GeneratorConfig{MaxConcurrent: 1}})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, "connect+proto", user)
	conv := create(t, c, "busy")

	first, err := send(ctx, c, conv.Id, "first")
	if err != nil || !first.Receive() {
		t.Fatalf("first send: %v %v", err, first.Err())
	}
	second, err := send(ctx, c, create(t, c, "another").Id, "second")
	if err == nil && !second.Receive() {
		err = second.Err()
	}
	wantCode(t, err, connect.CodeResourceExhausted, "at most 1 answers")
	ctxs := calls.contexts()
	if len(ctxs) != 2 {
		t.Fatalf("the model was asked %d times; want 2: the refused exchange asked ahead (if it did not, this test proves nothing)", len(ctxs))
	}
	select {
	case <-ctxs[1].Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the request asked ahead for the refused exchange was never canceled")
	}
	if ctxs[0].Err() != nil {
		t.Fatal("the first answer's request was canceled")
	}
	// If it reached the model before the cancel, the model saw it go.
	if len(fake.Requests()) == 2 && !fake.WaitCanceled(1, 5*time.Second) {
		t.Error("the model never saw the refused exchange's request canceled")
	}
	fake.Release(len(llmtest.DefaultChunks))
	if _, err := collect(t, first, 2); err != nil {
		t.Fatalf("the first answer: %v", err)
	}
}

// TestAskAheadNotOverQuota: with a quota the model is not asked ahead until
// the user's usage is known and has room, so a send the quota refuses
// sends nothing upstream.
func TestAskAheadNotOverQuota(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Usage(10, 20))
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: 150}}
	env := fakeEnv(t, fake, apitest.Options{Plans: plans, Generator: chat.GeneratorConfig{OutputReserve: 100}})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, "connect+json", user)
	// 101 reserved, 30 used once it ends: 120 left, under 101 × 4.
	if _, err := sendAll(ctx, c, create(t, c, "one").Id, "hi"); err != nil {
		t.Fatal(err)
	}
	// Room for 150 − 30 = 120 ≥ 101: this one fits, in order.
	if _, err := sendAll(ctx, c, create(t, c, "two").Id, "hi"); err != nil {
		t.Fatal(err)
	}
	asked := len(fake.Requests())
	// 60 used: 90 left < 101: refused, and nothing asked.
	_, err := sendAll(ctx, c, create(t, c, "three").Id, "hi")
	wantCode(t, err, connect.CodeResourceExhausted, "quota")
	if n := len(fake.Requests()); n != asked {
		t.Errorf("a send the quota refused sent %d requests upstream", n-asked)
	}
}

// sendAll sends content and reads the answer to its end.
func sendAll(ctx context.Context, c parleyv1connect.ChatServiceClient, convID, content string) (events, error) {
	return collectErr(send(ctx, c, convID, content))
}

// recordingProvider records the context of every model request.
type recordingProvider struct {
	chat.Provider
	mu   sync.Mutex
	ctxs []context.Context
}

func (p *recordingProvider) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	p.mu.Lock()
	p.ctxs = append(p.ctxs, ctx)
	p.mu.Unlock()
	return p.Provider.Stream(ctx, req)
}

func (p *recordingProvider) contexts() []context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ctxs)
}

package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/redistest"
)

const fakeModel = "fake-model"

// testIdleTimeout is the provider idle timeout of the test servers. Tests
// that hold the fake model (llmtest.Hold) make several calls while it says
// nothing; on a loaded two-core CI machine those have taken over 5 s, and the
// idle timer then failed the held answer (TestOneAnswerPerConversation). It
// stays well under testCtx's bound, so a real stall still fails the test.
const testIdleTimeout = 30 * time.Second

// fakeEnv is a server whose model is the fake OpenAI-compatible upstream,
// spoken to by the real openai-go client.
//
// Only agentEnv's servers (opts.Agent set) run agent steps. The package's
// tests share one database, hence one River queue: a server with workers
// also runs the steps of runs that other tests started and left unfinished,
// and asks its own fake model for them. On a held fake those requests take
// the chunks the test releases for its answers, which then wait until the
// provider's idle timeout fails them (seen in TestWaitingStacks: 17
// requests at the fake for its 8 answers, 9 of them agent steps).
func fakeEnv(t *testing.T, fake *llmtest.Server, opts apitest.Options) *apitest.Env {
	t.Helper()
	return fakeEnvModels(t, fake, opts, fakeModel)
}

// fakeEnvModels is fakeEnv offering models, all served by the fake.
func fakeEnvModels(t *testing.T, fake *llmtest.Server, opts apitest.Options, models ...string) *apitest.Env {
	t.Helper()
	opts.Provider = llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, APIKey: "sk-test", IdleTimeout: testIdleTimeout})
	opts.Models = models
	if opts.Agent == nil {
		opts.NoAgentWorkers = true
	}
	return apitest.New(t, opts)
}

// testCtx bounds a test's calls. The clock starts when it is made: a parallel subtest that uses its
// parent's context may wait for a free slot (-parallel, GOMAXPROCS) first,
// which on a loaded two-core machine has taken over 30 s, so the bound is
// generous; it exists only so a hung call fails instead of hanging.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type events = []*parleyv1.SendMessageResponse

// collect reads a generation stream to its end and checks the seq rule.
func collect(t *testing.T, stream *connect.ServerStreamForClient[parleyv1.SendMessageResponse], firstSeq int64) (events, error) {
	t.Helper()
	var out events
	for stream.Receive() {
		ev := stream.Msg()
		if want := firstSeq + int64(len(out)); ev.Seq != want {
			t.Errorf("event seq %d, want %d", ev.Seq, want)
		}
		out = append(out, ev)
	}
	return out, stream.Err()
}

func deltas(evs events) string {
	var b strings.Builder
	for _, ev := range evs {
		b.WriteString(ev.GetDelta().GetText())
	}
	return b.String()
}

func started(t *testing.T, evs events) *parleyv1.GenerationStarted {
	t.Helper()
	if len(evs) == 0 || evs[0].GetStarted() == nil {
		t.Fatalf("stream does not begin with started: %v", evs)
	}
	return evs[0].GetStarted()
}

func completed(t *testing.T, evs events) *parleyv1.Message {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].GetCompleted() == nil {
		t.Fatalf("stream does not end with completed: %v", evs)
	}
	return evs[len(evs)-1].GetCompleted().GetMessage()
}

// next receives one event or fails.
func next(t *testing.T, stream *connect.ServerStreamForClient[parleyv1.SendMessageResponse]) *parleyv1.SendMessageResponse {
	t.Helper()
	if !stream.Receive() {
		t.Fatalf("stream ended early: %v", stream.Err())
	}
	return stream.Msg()
}

func send(ctx context.Context, c parleyv1connect.ChatServiceClient, convID, content string) (*connect.ServerStreamForClient[parleyv1.SendMessageResponse], error) {
	return c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: convID, Content: content}))
}

// sendPartial sends content to a held fake model, reads the started event,
// lets n chunks through and reads them: the answer is then mid-stream.
func sendPartial(ctx context.Context, t *testing.T, fake *llmtest.Server, c parleyv1connect.ChatServiceClient, convID, content string, n int) (*connect.ServerStreamForClient[parleyv1.SendMessageResponse], *parleyv1.GenerationStarted, string) {
	t.Helper()
	stream, err := send(ctx, c, convID, content)
	if err != nil {
		t.Fatal(err)
	}
	st := next(t, stream).GetStarted()
	fake.Release(n)
	var partial strings.Builder
	for range n {
		partial.WriteString(next(t, stream).GetDelta().GetText())
	}
	return stream, st, partial.String()
}

func messages(t *testing.T, c parleyv1connect.ChatServiceClient, convID string) []*parleyv1.Message {
	t.Helper()
	res, err := c.ListMessages(context.Background(), connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: convID, PageSize: 100}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Messages
}

// waitMessage polls a message until cond holds (bounded).
func waitMessage(t *testing.T, env *apitest.Env, user uuid.UUID, id string, cond func(chat.Message) bool) chat.Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := env.Store.GetMessage(context.Background(), user, uuid.MustParse(id))
		if err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s never reached the wanted state; last %+v (err %v)", id, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSendMessage(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Usage(11, 5))
	env := fakeEnv(t, fake, apitest.Options{})
	t.Run("protocols", func(t *testing.T) {
		for _, protocol := range apitest.Protocols {
			t.Run(protocol, func(t *testing.T) {
				t.Parallel()
				ctx := testCtx(t)
				user := uuid.New()
				c := env.ChatClient(t, protocol, user)
				conv, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{SystemPrompt: "Be kind."}))
				if err != nil {
					t.Fatal(err)
				}
				convID := conv.Msg.Conversation.Id
				stream, err := send(ctx, c, convID, "Say hello")
				if err != nil {
					t.Fatal(err)
				}
				evs, err := collect(t, stream, 1)
				if err != nil {
					t.Fatal(err)
				}
				st := started(t, evs)
				if st.UserMessage.Content != "Say hello" || st.UserMessage.Role != parleyv1.Role_ROLE_USER || st.Model != fakeModel {
					t.Errorf("started = %v", st)
				}
				want := strings.Join(llmtest.DefaultChunks, "")
				if got := deltas(evs); got != want {
					t.Errorf("deltas = %q, want %q", got, want)
				}
				final := completed(t, evs)
				if final.Content != want || final.Status != parleyv1.MessageStatus_MESSAGE_STATUS_COMPLETED || final.Id != st.AssistantMessageId ||
					final.Usage.GetPromptTokens() != 11 || final.Usage.GetCompletionTokens() != 5 || final.FinishReason != "stop" {
					t.Errorf("completed = %v", final)
				}
				var sawUsage bool
				for _, ev := range evs {
					if u := ev.GetUsage(); u != nil && u.CompletionTokens == 5 {
						sawUsage = true
					}
				}
				if !sawUsage {
					t.Error("no usage event")
				}

				// The saved branch: the user message, then the answer, whose
				// content equals the concatenated deltas.
				msgs := messages(t, c, convID)
				if len(msgs) != 2 || msgs[0].Content != "Say hello" || msgs[1].Content != want ||
					msgs[1].Status != parleyv1.MessageStatus_MESSAGE_STATUS_COMPLETED || msgs[1].ParentId != msgs[0].Id || msgs[1].GenerationId != st.GenerationId {
					t.Errorf("saved messages = %v", msgs)
				}
			})
		}
	})
	// The provider saw the system prompt, the user message, and usage was asked for.
	var found bool
	for _, r := range fake.Requests() {
		if len(r.Messages) == 2 && r.Messages[0].Role == "system" && r.Messages[0].Content == "Be kind." &&
			r.Messages[1].Content == "Say hello" && r.IncludeUsage && r.Model == fakeModel {
			found = true
		}
	}
	if !found {
		t.Errorf("no upstream request carried the prompt: %+v", fake.Requests())
	}
}

func TestSendMessageContext(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t)
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, "connect+json", user)
	conv := create(t, c, "multi-turn")
	for _, content := range []string{"first", "second"} {
		stream, err := send(ctx, c, conv.Id, content)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := collect(t, stream, 1); err != nil {
			t.Fatal(err)
		}
	}
	reqs := fake.Requests()
	last := reqs[len(reqs)-1]
	var roles []string
	for _, m := range last.Messages {
		roles = append(roles, m.Role+":"+m.Content)
	}
	want := []string{"user:first", "assistant:" + strings.Join(llmtest.DefaultChunks, ""), "user:second"}
	if strings.Join(roles, "|") != strings.Join(want, "|") {
		t.Errorf("second prompt = %v, want %v", roles, want)
	}
}

func TestSendMessageTitle(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{Generator: chat.GeneratorConfig{Titler: chat.HeuristicTitler{}}})
	ctx := testCtx(t)
	c := env.ChatClient(t, "grpc", uuid.New())
	conv := create(t, c, "")
	stream, err := send(ctx, c, conv.Id, "plan a weekend in lisbon please")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := collect(t, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	var title string
	for _, ev := range evs {
		if ev.GetTitle() != nil {
			title = ev.GetTitle().Title
		}
	}
	if title != "Plan a weekend in lisbon please" {
		t.Errorf("title event = %q", title)
	}
	got, err := c.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.Id}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Msg.Conversation.Title != title {
		t.Errorf("saved title %q, want %q", got.Msg.Conversation.Title, title)
	}
	// Only the first exchange gets a title.
	stream, err = send(ctx, c, conv.Id, "and the food?")
	if err != nil {
		t.Fatal(err)
	}
	evs, _ = collect(t, stream, 1)
	for _, ev := range evs {
		if ev.GetTitle() != nil {
			t.Errorf("second exchange got a title event %q", ev.GetTitle().Title)
		}
	}
}

// TestOfflineProvider: the dev responder streams word by word through the
// same pipeline and is saved under its own model name.
func TestOfflineProvider(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := testCtx(t)
	c := env.ChatClient(t, "connect+json", uuid.New())
	conv := create(t, c, "offline")
	stream, err := send(ctx, c, conv.Id, "I feel tired today")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := collect(t, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, ev := range evs {
		if ev.GetDelta() != nil {
			n++
		}
	}
	final := completed(t, evs)
	if n < 3 || final.Content != deltas(evs) || final.Model != llm.OfflineModel {
		t.Errorf("offline answer: %d deltas, final %v", n, final)
	}
}

func TestSendMessageInvalid(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, "grpcweb", user)
	conv := create(t, c, "x")
	other := create(t, env.ChatClient(t, "grpcweb", uuid.New()), "someone else's")
	tests := []struct {
		name string
		req  *parleyv1.SendMessageRequest
		code connect.Code
		msg  string
	}{
		{"ErrEmptyContent", &parleyv1.SendMessageRequest{ConversationId: conv.Id}, connect.CodeInvalidArgument, "content"},
		{"ErrContentTooLong", &parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: strings.Repeat("a", chat.MaxContentBytes+1)}, connect.CodeInvalidArgument, "content"},
		{"ErrUnknownModel", &parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "hi", Model: "gpt-99"}, connect.CodeInvalidArgument, "model"},
		{"ErrBadConversationID", &parleyv1.SendMessageRequest{ConversationId: "x", Content: "hi"}, connect.CodeInvalidArgument, "conversation_id"},
		{"ErrMissingParent", &parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "hi", ParentMessageId: uuid.NewString()}, connect.CodeNotFound, "parent message not found"},
		{"ErrBadParentID", &parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "hi", ParentMessageId: "nope"}, connect.CodeInvalidArgument, "parent_message_id"},
		{"ErrClientMessageIDTooLong", &parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "hi", ClientMessageId: strings.Repeat("x", 101)}, connect.CodeInvalidArgument, "client_message_id"},
		{"ErrOtherUsersConversation", &parleyv1.SendMessageRequest{ConversationId: other.Id, Content: "hi"}, connect.CodeNotFound, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := c.SendMessage(ctx, connect.NewRequest(tt.req))
			if err == nil {
				_, err = collect(t, stream, 1)
			}
			wantCode(t, err, tt.code, tt.msg)
		})
	}
	if msgs := messages(t, c, conv.Id); len(msgs) != 0 {
		t.Errorf("rejected sends saved %d messages", len(msgs))
	}
	for _, call := range []func() error{
		func() error {
			_, err := c.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: uuid.NewString()}))
			return err
		},
		func() error {
			s, err := c.ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: uuid.NewString()}))
			if err == nil {
				_, err = collect(t, s, 1)
			}
			return err
		},
	} {
		wantCode(t, call(), connect.CodeNotFound, "")
	}
}

// TestSendMessageIdempotent: a retry with the same client_message_id
// attaches to the first answer instead of starting a second one.
func TestSendMessageIdempotent(t *testing.T) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			testSendMessageIdempotent(t, protocol)
		})
	}
}

func testSendMessageIdempotent(t *testing.T, protocol string) {
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, protocol, user)
	conv := create(t, c, "retry")
	req := &parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "once", ClientMessageId: "client-1"}
	first, err := c.SendMessage(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	firstStarted := next(t, first).GetStarted()
	// The retry arrives while the first answer still streams.
	second, err := c.SendMessage(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	fake.Release(len(llmtest.DefaultChunks))
	evs, err := collect(t, second, 1)
	if err != nil {
		t.Fatal(err)
	}
	if started(t, evs).GenerationId != firstStarted.GenerationId {
		t.Errorf("retry started generation %s, want the first one %s", started(t, evs).GenerationId, firstStarted.GenerationId)
	}
	if got := completed(t, evs).Content; got != strings.Join(llmtest.DefaultChunks, "") {
		t.Errorf("retry saw %q", got)
	}
	// And a retry after the end replays the same answer.
	third, err := c.SendMessage(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	evs, err = collect(t, third, 1)
	if err != nil {
		t.Fatal(err)
	}
	if started(t, evs).GenerationId != firstStarted.GenerationId {
		t.Error("retry after the end started a new generation")
	}
	if n := len(messages(t, c, conv.Id)); n != 2 {
		t.Errorf("%d messages after three sends with one client_message_id, want 2", n)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("the model was asked %d times, want 1", n)
	}
}

// countingStore counts the database writes of generations.
type countingStore struct {
	chat.GenerationStore
	inserts, checkpoints, finishes atomic.Int64
}

func (s *countingStore) InsertExchange(ctx context.Context, userID uuid.UUID, x chat.NewExchange) (*chat.Message, chat.Message, error) {
	s.inserts.Add(1)
	return s.GenerationStore.InsertExchange(ctx, userID, x)
}

func (s *countingStore) CheckpointMessages(ctx context.Context, cps []chat.Checkpoint) ([]uuid.UUID, error) {
	s.checkpoints.Add(1)
	return s.GenerationStore.CheckpointMessages(ctx, cps)
}

func (s *countingStore) FinishMessage(ctx context.Context, id uuid.UUID, o chat.Outcome) (chat.Message, error) {
	s.finishes.Add(1)
	return s.GenerationStore.FinishMessage(ctx, id, o)
}

// TestPersistence: the exchange is saved before the first delta, content
// is checkpointed once per interval (never once per token) and the end is
// saved once. The checkpoint clock is a fake one the test moves, so the
// cadence is exact: one interval passes, so one checkpoint is written.
func TestPersistence(t *testing.T) {
	t.Parallel()
	chunks := llmtest.FixedChunks(40, 8)
	fake := llmtest.NewServer(t, llmtest.Chunks(chunks), llmtest.Hold())
	counter := &countingStore{}
	interval := time.Second
	clk := clock.NewFake(time.Now())
	env := fakeEnv(t, fake, apitest.Options{
		Clock:     clk,
		Generator: chat.GeneratorConfig{CheckpointInterval: interval},
		WrapStore: func(s chat.GenerationStore) chat.GenerationStore { counter.GenerationStore = s; return counter },
	})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, "grpc", user)
	conv := create(t, c, "persist")
	stream, err := send(ctx, c, conv.Id, "long answer please")
	if err != nil {
		t.Fatal(err)
	}
	st := next(t, stream).GetStarted()

	// Before any delta: both messages are saved, the answer streaming.
	saved := messages(t, c, conv.Id)
	if len(saved) != 2 || saved[0].Content != "long answer please" || saved[1].Status != parleyv1.MessageStatus_MESSAGE_STATUS_STREAMING || saved[1].Id != st.AssistantMessageId {
		t.Fatalf("before the first delta: %v", saved)
	}

	// Half the answer, then one interval: one checkpoint with exactly the
	// text so far.
	var got strings.Builder
	relay := func(n int) {
		for range n {
			fake.Release(1)
			got.WriteString(next(t, stream).GetDelta().GetText())
		}
	}
	relay(20)
	clk.Advance(interval)
	m := waitMessage(t, env, user, st.AssistantMessageId, func(m chat.Message) bool { return m.Content != "" })
	if m.Content != got.String() || m.Status != chat.StatusStreaming {
		t.Errorf("checkpoint %q (%s), want the answer so far %q streaming", m.Content, m.Status, got.String())
	}
	relay(20)
	if _, err := collect(t, stream, int64(len(chunks))+2); err != nil {
		t.Fatal(err)
	}
	if n := counter.checkpoints.Load(); n != 1 {
		t.Errorf("%d checkpoints for %d tokens over one interval with text; want 1", n, len(chunks))
	}
	if counter.inserts.Load() != 1 || counter.finishes.Load() != 1 {
		t.Errorf("inserts %d, finishes %d; want 1 each", counter.inserts.Load(), counter.finishes.Load())
	}
}

// TestUpstreamFailures: a failing provider ends the stream with an honest
// code and keeps the partial answer as failed.
func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		opt         llmtest.Option
		code        connect.Code
		wantContent string
		retryAfter  string
	}{
		{"ErrCutMidStream", llmtest.CutAfter(2), connect.CodeUnavailable, "Hello from", ""},
		{"ErrMalformedChunk", llmtest.MalformedAfter(3), connect.CodeUnavailable, "Hello from the", ""},
		{"Err500", llmtest.Fail500(), connect.CodeUnavailable, "", ""},
		{"Err429", llmtest.Fail429("7"), connect.CodeResourceExhausted, "", "7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.NewServer(t, tt.opt)
			env := fakeEnv(t, fake, apitest.Options{})
			ctx := testCtx(t)
			user := uuid.New()
			for _, protocol := range apitest.Protocols {
				c := env.ChatClient(t, protocol, user)
				conv := create(t, c, tt.name)
				stream, err := send(ctx, c, conv.Id, "hi")
				if err != nil {
					t.Fatal(err)
				}
				evs, err := collect(t, stream, 1)
				wantCode(t, err, tt.code, "")
				if tt.retryAfter != "" {
					var ce *connect.Error
					if !errorsAs(err, &ce) || ce.Meta().Get("Retry-After") != tt.retryAfter {
						t.Errorf("%s: Retry-After = %q, want %q", protocol, ce.Meta().Get("Retry-After"), tt.retryAfter)
					}
				}
				st := started(t, evs)
				m := waitMessage(t, env, user, st.AssistantMessageId, chat.Message.Ended)
				if m.Status != chat.StatusFailed || m.Content != tt.wantContent || deltas(evs) != tt.wantContent {
					t.Errorf("%s: saved %q (%s), streamed %q; want %q failed", protocol, m.Content, m.Status, deltas(evs), tt.wantContent)
				}
			}
		})
	}
}

// TestStopGeneration: stop cancels the upstream request, keeps the partial
// answer as stopped, and ends the stream with it.
func TestStopGeneration(t *testing.T) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			// A server of its own: held chunks are shared by a fake's streams.
			testStopGeneration(t, protocol)
		})
	}
}

func testStopGeneration(t *testing.T, protocol string) {
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, protocol, user)
	conv := create(t, c, "stop")
	stream, st, partial := sendPartial(ctx, t, fake, c, conv.Id, "talk forever", 2)

	res, err := c.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: st.GenerationId}))
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Msg.Message; m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || m.Content != partial {
		t.Errorf("stop returned %v, want stopped with %q", m, partial)
	}
	if !fake.WaitCanceled(1, 5*time.Second) {
		t.Error("the upstream request was not canceled")
	}
	evs, err := collect(t, stream, 4)
	if err != nil {
		t.Fatal(err)
	}
	if m := completed(t, evs); m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || m.Content != partial {
		t.Errorf("stream ended with %v", m)
	}
	// Stopping again is harmless and returns the same answer.
	again, err := c.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: st.GenerationId}))
	if err != nil || again.Msg.Message.Content != partial {
		t.Errorf("second stop: %v %v", again, err)
	}
}

// TestClientDisconnect: the answer runs on and is saved complete when the
// client goes away.
func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{})
	user := uuid.New()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			c := env.ChatClient(t, protocol, user)
			conv := create(t, c, "leave")
			ctx, cancel := context.WithCancel(testCtx(t))
			stream, err := send(ctx, c, conv.Id, "answer while I'm gone")
			if err != nil {
				t.Fatal(err)
			}
			st := next(t, stream).GetStarted()
			cancel() // the tab closes
			stream.Close()
			fake.Release(len(llmtest.DefaultChunks))
			m := waitMessage(t, env, user, st.AssistantMessageId, chat.Message.Ended)
			if m.Status != chat.StatusCompleted || m.Content != strings.Join(llmtest.DefaultChunks, "") {
				t.Errorf("after the client left: %q (%s)", m.Content, m.Status)
			}
		})
	}
}

// twoInstances starts two servers sharing the database and Redis, as two
// Cloud Run instances would.
func twoInstances(t *testing.T, fake *llmtest.Server, retention time.Duration) (a, b *apitest.Env) {
	t.Helper()
	opts := apitest.Options{RedisURL: redistest.URL(t), RedisPrefix: redistest.Prefix(t), Retention: retention}
	return fakeEnv(t, fake, opts), fakeEnv(t, fake, opts)
}

func TestResumeOnAnotherInstance(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	a, b := twoInstances(t, fake, time.Minute)
	ctx := testCtx(t)
	user := uuid.New()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			ca, cb := a.ChatClient(t, protocol, user), b.ChatClient(t, protocol, user)
			conv := create(t, ca, "resume")
			streamCtx, drop := context.WithCancel(ctx)
			stream, err := send(streamCtx, ca, conv.Id, "hello?")
			if err != nil {
				t.Fatal(err)
			}
			st := next(t, stream).GetStarted()
			fake.Release(2)
			seen := next(t, stream).GetDelta().GetText()
			if ev := next(t, stream); ev.Seq != 3 {
				t.Fatalf("third event has seq %d", ev.Seq)
			}
			drop() // the connection breaks after seq 3
			stream.Close()

			// Reconnect to the other instance, resuming after seq 2.
			resumed, err := cb.ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: st.GenerationId, AfterSeq: 2}))
			if err != nil {
				t.Fatal(err)
			}
			fake.Release(len(llmtest.DefaultChunks) - 2)
			evs, err := collect(t, resumed, 3)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Join(llmtest.DefaultChunks, "")
			if got := seen + deltas(evs); got != want {
				t.Errorf("seen + resumed = %q, want %q", got, want)
			}
			if m := completed(t, evs); m.Content != want {
				t.Errorf("completed %v", m)
			}

			// From the start, on either instance, after the end: the whole log.
			for _, c := range []parleyv1connect.ChatServiceClient{ca, cb} {
				again, err := c.ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: st.GenerationId}))
				if err != nil {
					t.Fatal(err)
				}
				evs, err := collect(t, again, 1)
				if err != nil || deltas(evs) != want || started(t, evs).GenerationId != st.GenerationId {
					t.Errorf("full replay: %q, %v", deltas(evs), err)
				}
			}
		})
	}
}

// TestResumeAfterLogExpired: once the shared log of a finished answer has
// expired, a resume on another instance rebuilds the answer from the
// database. The log's expiry is checked (the retention is set on Finish)
// and then carried out by deleting the key as Redis would, so the test
// need not wait; the replay has the database's shape (one delta with the
// whole text), which a replay from the log (one delta per chunk) has not.
func TestResumeAfterLogExpired(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t)
	const retention = time.Minute
	redisURL, prefix := redistest.URL(t), redistest.Prefix(t)
	opts := apitest.Options{RedisURL: redisURL, RedisPrefix: prefix, Retention: retention}
	a, b := fakeEnv(t, fake, opts), fakeEnv(t, fake, opts)
	ctx := testCtx(t)
	user := uuid.New()
	c := a.ChatClient(t, "connect+json", user)
	conv := create(t, c, "expired")
	stream, err := send(ctx, c, conv.Id, "hi")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := collect(t, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := countKind(evs, "delta"); n < 2 {
		t.Fatalf("the answer streamed %d deltas; the test needs several to tell a replay from the log apart", n)
	}
	genID := started(t, evs).GenerationId

	rdb := redis.NewClient(mustParseRedisURL(t, redisURL))
	defer rdb.Close()
	key := prefix + "log:" + genID
	var ttl time.Duration
	for range 100 { // the log is finished just after the last event is relayed
		if ttl, err = rdb.PTTL(ctx, key).Result(); err != nil {
			t.Fatal(err)
		}
		if ttl > 0 && ttl <= retention {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ttl <= 0 || ttl > retention {
		t.Fatalf("the finished log's time to live is %v, want at most the retention %v", ttl, retention)
	}
	if err := rdb.Del(ctx, key).Err(); err != nil { // what expiry does
		t.Fatal(err)
	}

	resumed, err := b.ChatClient(t, "connect+json", user).ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: genID}))
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := collect(t, resumed, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := countKind(replayed, "delta"); n != 1 {
		t.Errorf("the replay has %d deltas, want the database's one", n)
	}
	if deltas(replayed) != deltas(evs) || completed(t, replayed).Content != deltas(evs) {
		t.Errorf("replay from the database: %q, want %q", deltas(replayed), deltas(evs))
	}
}

// countKind counts the events of one kind ("delta", "usage", ...).
func countKind(evs []*parleyv1.SendMessageResponse, kind string) int {
	n := 0
	for _, ev := range evs {
		if kindOf(ev) == kind {
			n++
		}
	}
	return n
}

// kindOf names an event's kind as the chat domain does ("delta", ...).
func kindOf(ev *parleyv1.SendMessageResponse) string {
	switch ev.Event.(type) {
	case *parleyv1.SendMessageResponse_Started:
		return "started"
	case *parleyv1.SendMessageResponse_Delta:
		return "delta"
	case *parleyv1.SendMessageResponse_ToolCall:
		return "tool_call"
	case *parleyv1.SendMessageResponse_ArtifactDelta:
		return "artifact_delta"
	case *parleyv1.SendMessageResponse_ToolResult:
		return "tool_result"
	case *parleyv1.SendMessageResponse_Usage:
		return "usage"
	case *parleyv1.SendMessageResponse_Title:
		return "title"
	case *parleyv1.SendMessageResponse_Completed:
		return "completed"
	}
	return ""
}

func mustParseRedisURL(t *testing.T, url string) *redis.Options {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func TestStopFromAnotherInstance(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	a, b := twoInstances(t, fake, time.Minute)
	ctx := testCtx(t)
	user := uuid.New()
	ca := a.ChatClient(t, "grpc", user)
	conv := create(t, ca, "remote stop")
	stream, st, partial := sendPartial(ctx, t, fake, ca, conv.Id, "go on", 1)

	res, err := b.ChatClient(t, "grpc", user).StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: st.GenerationId}))
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Msg.Message; m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || m.Content != partial {
		t.Errorf("stop via the other instance returned %v, want stopped %q", m, partial)
	}
	if !fake.WaitCanceled(1, 5*time.Second) {
		t.Error("the upstream request was not canceled")
	}
	evs, err := collect(t, stream, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m := completed(t, evs); m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED {
		t.Errorf("the original stream ended with %v", m)
	}
}

// TestShutdownInterrupts: on SIGTERM the partial answer is saved as
// interrupted and the stream ends with unavailable.
func TestShutdownInterrupts(t *testing.T) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			testShutdownInterrupts(t, protocol)
		})
	}
}

func testShutdownInterrupts(t *testing.T, protocol string) {
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, protocol, user)
	conv := create(t, c, "shutdown")
	stream, st, partial := sendPartial(ctx, t, fake, c, conv.Id, "hi", 1)
	go env.Stop() // as SIGTERM: the held answer outlives the drain
	_, err := collect(t, stream, 3)
	wantCode(t, err, connect.CodeUnavailable, "restarted")
	m, err := env.Store.GetMessage(ctx, user, uuid.MustParse(st.AssistantMessageId))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != chat.StatusInterrupted || m.Content != partial {
		t.Errorf("after shutdown: %q (%s), want %q interrupted", m.Content, m.Status, partial)
	}
}

// TestBranches: regenerate and edit add sibling branches, the old branch
// stays, and a client can switch between them.
func TestBranches(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			testBranches(t, env, protocol)
		})
	}
}

func testBranches(t *testing.T, env *apitest.Env, protocol string) {
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, protocol, user)
	conv := create(t, c, "branches")
	run := func(stream *connect.ServerStreamForClient[parleyv1.SendMessageResponse], err error) *parleyv1.GenerationStarted {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		evs, err := collect(t, stream, 1)
		if err != nil {
			t.Fatal(err)
		}
		return started(t, evs)
	}
	first := run(send(ctx, c, conv.Id, "hello"))
	u1, a1 := first.UserMessage.Id, first.AssistantMessageId

	// Regenerate: a second answer beside the first.
	regen := run(c.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: a1})))
	a2 := regen.AssistantMessageId
	if regen.UserMessage.Id != u1 {
		t.Errorf("regeneration answers %s, want %s", regen.UserMessage.Id, u1)
	}
	branch := messages(t, c, conv.Id)
	if len(branch) != 2 || branch[0].Id != u1 || branch[1].Id != a2 || branch[1].SiblingCount != 2 || branch[1].SiblingIndex != 1 ||
		fmt.Sprint(branch[1].SiblingIds) != fmt.Sprint([]string{a1, a2}) {
		t.Fatalf("after regenerate: %v", branch)
	}

	// Switch back to the first answer.
	sel, err := c.SelectBranch(ctx, connect.NewRequest(&parleyv1.SelectBranchRequest{ConversationId: conv.Id, MessageId: a1}))
	if err != nil {
		t.Fatal(err)
	}
	if m := sel.Msg.Messages; len(m) != 2 || m[1].Id != a1 || m[1].SiblingIndex != 0 {
		t.Fatalf("after selecting a1: %v", m)
	}

	// Edit the user message: a new user message beside it, with an answer.
	edit := run(c.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: u1, Content: "hello again"})))
	branch = messages(t, c, conv.Id)
	if len(branch) != 2 || branch[0].Id != edit.UserMessage.Id || branch[0].Content != "hello again" || branch[0].SiblingCount != 2 ||
		branch[1].Id != edit.AssistantMessageId {
		t.Fatalf("after edit: %v", branch)
	}
	// The old branches are still there.
	old, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id, LeafMessageId: a2}))
	if err != nil {
		t.Fatal(err)
	}
	if m := old.Msg.Messages; len(m) != 2 || m[0].Content != "hello" || m[1].Id != a2 {
		t.Errorf("old branch: %v", m)
	}
	// Selecting the original user message continues at its newest answer.
	sel, err = c.SelectBranch(ctx, connect.NewRequest(&parleyv1.SelectBranchRequest{ConversationId: conv.Id, MessageId: u1}))
	if err != nil {
		t.Fatal(err)
	}
	if m := sel.Msg.Messages; len(m) != 2 || m[0].Id != u1 || m[1].Id != a2 {
		t.Errorf("selecting u1: %v", m)
	}
	// A follow-up continues the active branch.
	next := run(send(ctx, c, conv.Id, "tell me more"))
	if next.UserMessage.ParentId != a2 {
		t.Errorf("follow-up parent %s, want %s", next.UserMessage.ParentId, a2)
	}

	// Wrong kinds of messages and other users' ids.
	_, err = collectErr(c.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: u1})))
	wantCode(t, err, connect.CodeInvalidArgument, "message_id")
	_, err = collectErr(c.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: a1, Content: "x"})))
	wantCode(t, err, connect.CodeInvalidArgument, "message_id")
	stranger := env.ChatClient(t, protocol, uuid.New())
	_, err = collectErr(stranger.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: a1})))
	wantCode(t, err, connect.CodeNotFound, "")
	_, err = collectErr(stranger.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: u1, Content: "x"})))
	wantCode(t, err, connect.CodeNotFound, "")
	_, err = stranger.SelectBranch(ctx, connect.NewRequest(&parleyv1.SelectBranchRequest{ConversationId: conv.Id, MessageId: a1}))
	wantCode(t, err, connect.CodeNotFound, "")
	_, err = stranger.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: first.GenerationId}))
	wantCode(t, err, connect.CodeNotFound, "")
}

func collectErr(stream *connect.ServerStreamForClient[parleyv1.SendMessageResponse], err error) (events, error) {
	if err != nil {
		return nil, err
	}
	var out events
	for stream.Receive() {
		out = append(out, stream.Msg())
	}
	return out, stream.Err()
}
func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestGenerationCrossUser: another user's generation, message and branch
// ids answer not_found on every generation RPC, exactly like missing ids,
// over every protocol.
func TestGenerationCrossUser(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := testCtx(t)
	alice := env.ChatClient(t, "connect+json", uuid.New())
	conv := create(t, alice, "alice")
	evs, err := collectErr(send(ctx, alice, conv.Id, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	st := started(t, evs)
	calls := []struct {
		name string
		call func(c parleyv1connect.ChatServiceClient, ids [4]string) error // conversation, user msg, answer, generation
	}{
		{"SendMessageParent", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			bobConv := create(t, c, "bob")
			_, err := collectErr(c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: bobConv.Id, Content: "x", ParentMessageId: ids[2]})))
			return err
		}},
		{"ResumeGeneration", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			_, err := collectErr(c.ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: ids[3]})))
			return err
		}},
		{"StopGeneration", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			_, err := c.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: ids[3]}))
			return err
		}},
		{"RegenerateMessage", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			_, err := collectErr(c.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: ids[2]})))
			return err
		}},
		{"EditMessage", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			_, err := collectErr(c.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: ids[1], Content: "x"})))
			return err
		}},
		{"SelectBranch", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			_, err := c.SelectBranch(ctx, connect.NewRequest(&parleyv1.SelectBranchRequest{ConversationId: ids[0], MessageId: ids[2]}))
			return err
		}},
		{"ListMessagesLeaf", func(c parleyv1connect.ChatServiceClient, ids [4]string) error {
			_, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: ids[0], LeafMessageId: ids[2]}))
			return err
		}},
	}
	alices := [4]string{conv.Id, st.UserMessage.Id, st.AssistantMessageId, st.GenerationId}
	missing := [4]string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, protocol := range apitest.Protocols {
		bob := env.ChatClient(t, protocol, uuid.New())
		for _, tt := range calls {
			t.Run(protocol+"/"+tt.name, func(t *testing.T) {
				errOther, errMissing := tt.call(bob, alices), tt.call(bob, missing)
				wantCode(t, errOther, connect.CodeNotFound, "")
				wantCode(t, errMissing, connect.CodeNotFound, "")
				if errOther.Error() != errMissing.Error() {
					t.Errorf("another user's id (%v) answers unlike a missing one (%v)", errOther, errMissing)
				}
			})
		}
	}
	if msgs := messages(t, alice, conv.Id); len(msgs) != 2 || msgs[1].Content != completed(t, evs).Content {
		t.Errorf("alice's conversation changed: %v", msgs)
	}
}

// TestMaxGenerationTime: an answer that runs past the maximum generation
// time ends with deadline_exceeded and keeps its partial text as failed.
func TestMaxGenerationTime(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{Generator: chat.GeneratorConfig{MaxDuration: 500 * time.Millisecond}})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ChatClient(t, "grpc", user)
	conv := create(t, c, "slow")
	stream, st, partial := sendPartial(ctx, t, fake, c, conv.Id, "hi", 1)
	_, err := collect(t, stream, 3)
	wantCode(t, err, connect.CodeDeadlineExceeded, "maximum generation time")
	m := waitMessage(t, env, user, st.AssistantMessageId, chat.Message.Ended)
	if m.Status != chat.StatusFailed || m.Content != partial {
		t.Errorf("saved %q (%s), want %q failed", m.Content, m.Status, partial)
	}
	if !fake.WaitCanceled(1, 5*time.Second) {
		t.Error("the upstream request was not canceled")
	}
}

// blockingTitler writes its title only when released.
type blockingTitler struct{ release chan struct{} }

func (b blockingTitler) Title(ctx context.Context, _, _ string) (string, chat.Usage, error) {
	select {
	case <-b.release:
		return "Late title", chat.Usage{}, nil
	case <-ctx.Done():
		return "", chat.Usage{}, ctx.Err()
	}
}

// TestTitleDoesNotDelayAnswer: the answer streams while the title is still
// being written; the title arrives in the same stream before completed.
func TestTitleDoesNotDelayAnswer(t *testing.T) {
	t.Parallel()
	titler := blockingTitler{release: make(chan struct{})}
	env := apitest.New(t, apitest.Options{Generator: chat.GeneratorConfig{Titler: titler}})
	ctx := testCtx(t)
	c := env.ChatClient(t, "connect+json", uuid.New())
	conv := create(t, c, "")
	stream, err := send(ctx, c, conv.Id, "hello there")
	if err != nil {
		t.Fatal(err)
	}
	next(t, stream) // started
	if ev := next(t, stream); ev.GetDelta() == nil {
		t.Fatalf("second event %v, want a delta before the title", ev)
	}
	close(titler.release)
	evs, err := collect(t, stream, 3)
	if err != nil {
		t.Fatal(err)
	}
	var title string
	for _, ev := range evs {
		if ev.GetTitle() != nil {
			title = ev.GetTitle().Title
		}
	}
	if title != "Late title" || completed(t, evs) == nil {
		t.Errorf("title %q", title)
	}
}

// TestOneAnswerPerConversation: while an answer streams, another send,
// regenerate or edit in the conversation answers failed_precondition.
func TestOneAnswerPerConversation(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	c := env.ChatClient(t, "connect+json", uuid.New())
	conv := create(t, c, "busy")
	stream, err := send(ctx, c, conv.Id, "first")
	if err != nil {
		t.Fatal(err)
	}
	st := next(t, stream).GetStarted()
	_, err = collectErr(send(ctx, c, conv.Id, "second"))
	wantCode(t, err, connect.CodeFailedPrecondition, "StopGeneration")
	_, err = collectErr(c.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: st.UserMessage.Id, Content: "edited"})))
	wantCode(t, err, connect.CodeFailedPrecondition, "StopGeneration")
	_, err = collectErr(c.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: st.AssistantMessageId})))
	wantCode(t, err, connect.CodeFailedPrecondition, "StopGeneration")
	// A refused send or edit may have asked the model ahead before its
	// insert was refused; that request is canceled, but a held request the
	// fake has not yet seen canceled would take a released chunk from the
	// answer. Release once only the answer's request is left.
	if !fake.WaitCanceled(len(fake.Requests())-1, 10*time.Second) {
		t.Fatalf("the model still holds %d requests, canceled %d; want every refused call's request canceled", len(fake.Requests()), fake.Canceled())
	}
	fake.Release(len(llmtest.DefaultChunks))
	if _, err := collect(t, stream, 2); err != nil {
		t.Fatal(err)
	}
	if n := len(messages(t, c, conv.Id)); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestStopWithoutSharedLog: even when the stop signal cannot reach the
// running instance (no shared event log), a stop recorded in the database
// stops the model there at its next checkpoint.
func TestStopWithoutSharedLog(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	opts := apitest.Options{Generator: chat.GeneratorConfig{CheckpointInterval: 50 * time.Millisecond, StopWait: 100 * time.Millisecond}}
	a, b := fakeEnv(t, fake, opts), fakeEnv(t, fake, opts) // separate in-memory logs
	ctx := testCtx(t)
	user := uuid.New()
	ca := a.ChatClient(t, "connect+json", user)
	conv := create(t, ca, "isolated")
	stream, st, partial := sendPartial(ctx, t, fake, ca, conv.Id, "hi", 1)
	waitMessage(t, a, user, st.AssistantMessageId, func(m chat.Message) bool { return m.Content == partial })

	res, err := b.ChatClient(t, "grpc", user).StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: st.GenerationId}))
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Msg.Message; m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || m.Content != partial {
		t.Errorf("stop returned %v", m)
	}
	if !fake.WaitCanceled(1, 5*time.Second) {
		t.Error("the model was not stopped on the instance that runs it")
	}
	evs, err := collect(t, stream, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m := completed(t, evs); m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED || m.Content != partial {
		t.Errorf("the running instance ended with %v", m)
	}
}

// TestOneAnswerPerConversationRace: sends racing into one conversation (a
// double click, two tabs) start exactly one answer.
func TestOneAnswerPerConversationRace(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Hold())
	a := fakeEnv(t, fake, apitest.Options{Generator: chat.GeneratorConfig{MaxConcurrent: 100}})
	b := fakeEnv(t, fake, apitest.Options{Generator: chat.GeneratorConfig{MaxConcurrent: 100}})
	ctx := testCtx(t)
	user := uuid.New()
	conv := create(t, a.ChatClient(t, "grpc", user), "race")
	const racers = 10
	results := make(chan error, racers)
	for i := range racers {
		c := []*apitest.Env{a, b}[i%2].ChatClient(t, apitest.Protocols[i%len(apitest.Protocols)], user)
		go func() {
			stream, err := send(ctx, c, conv.Id, fmt.Sprintf("click %d", i))
			if err == nil && stream.Receive() {
				results <- nil
				return
			}
			if err == nil {
				err = stream.Err()
			}
			results <- err
		}()
	}
	var started int
	for range racers {
		err := <-results
		switch {
		case err == nil:
			started++
		case connect.CodeOf(err) != connect.CodeFailedPrecondition:
			t.Errorf("racer: %v, want failed_precondition", err)
		}
	}
	if started != 1 {
		t.Errorf("%d answers started in one conversation, want 1", started)
	}
	fake.Release(len(llmtest.DefaultChunks))
}

// TestAnswerWithNUL: text Postgres cannot store (a NUL byte from the model)
// is replaced, so the answer and everyone's checkpoints are still saved.
func TestAnswerWithNUL(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Chunks([]string{"a\x00b", " ok"}))
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	c := env.ChatClient(t, "connect+json", uuid.New())
	conv := create(t, c, "nul")
	evs, err := collectErr(send(ctx, c, conv.Id, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	want := "a\uFFFDb ok"
	if got := completed(t, evs).Content; got != want {
		t.Errorf("completed %q, want %q", got, want)
	}
	if msgs := messages(t, c, conv.Id); len(msgs) != 2 || msgs[1].Content != want {
		t.Errorf("saved %v", msgs)
	}
}

// TestIdempotentEditAndRegenerate: EditMessage and RegenerateMessage
// retried with the same client_message_id stream the first attempt's
// answer: no second branch, no second model call, no second charge.
func TestIdempotentEditAndRegenerate(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t)
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			c := env.ChatClient(t, protocol, user)
			conv := create(t, c, "idempotent")
			stream, err := send(ctx, c, conv.Id, "question")
			if err != nil {
				t.Fatal(err)
			}
			evs, err := collect(t, stream, 1)
			if err != nil {
				t.Fatal(err)
			}
			question, answer := started(t, evs).UserMessage.Id, completed(t, evs).Id
			calls := []struct {
				name string
				call func() (*connect.ServerStreamForClient[parleyv1.SendMessageResponse], error)
			}{
				{"EditMessage", func() (*connect.ServerStreamForClient[parleyv1.SendMessageResponse], error) {
					return c.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: question, Content: "better", ClientMessageId: "edit-" + protocol}))
				}},
				{"RegenerateMessage", func() (*connect.ServerStreamForClient[parleyv1.SendMessageResponse], error) {
					return c.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: answer, ClientMessageId: "regen-" + protocol}))
				}},
			}
			for _, tc := range calls {
				before := len(fake.Requests())
				var ids []string
				for range 2 {
					evs, err := collectErr(tc.call())
					if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					ids = append(ids, completed(t, evs).Id)
				}
				if ids[0] != ids[1] {
					t.Errorf("%s: the retry streamed answer %s, want the first attempt's %s", tc.name, ids[1], ids[0])
				}
				if n := len(fake.Requests()) - before; n != 1 {
					t.Errorf("%s: the model was asked %d times, want once", tc.name, n)
				}
			}
		})
	}
}

// TestManyRemoteFollowers: hundreds of clients resuming, on instance B, an
// answer that runs on instance A hold no Redis connection while they wait,
// so B's own live answer keeps being mirrored and followed from A. The
// Redis pool is made far smaller than the followers to show it: a follower
// that held a connection (as a blocking read does) would starve the mirror.
func TestManyRemoteFollowers(t *testing.T) {
	t.Parallel()
	const followers = 300
	fakeA, fakeB := llmtest.NewServer(t, llmtest.Hold()), llmtest.NewServer(t, llmtest.Hold())
	opts := apitest.Options{
		RedisURL: redistest.URL(t) + "?pool_size=16", RedisPrefix: redistest.Prefix(t), Retention: time.Minute,
		Generator: chat.GeneratorConfig{MaxFollowersPerUser: followers + 10},
	}
	a, b := fakeEnv(t, fakeA, opts), fakeEnv(t, fakeB, opts)
	ctx := testCtx(t)
	user := uuid.New()

	ca := a.ChatClient(t, "connect+proto", user)
	stream, err := send(ctx, ca, create(t, ca, "followed").Id, "hi")
	if err != nil {
		t.Fatal(err)
	}
	followed := next(t, stream).GetStarted().GenerationId

	// The followers, on B, each past the started event.
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	ready, ended := make(chan error, followers), make(chan error, followers)
	for range followers {
		go func() {
			res, err := b.ChatClient(t, "connect+proto", user).ResumeGeneration(followCtx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: followed}))
			if err == nil && !res.Receive() {
				err = res.Err()
			}
			ready <- err
			if err != nil {
				return
			}
			// Follow to the end: every follower must see the answer complete.
			var last *parleyv1.SendMessageResponse
			for res.Receive() {
				last = res.Msg()
			}
			if err := res.Err(); err != nil {
				ended <- err
				return
			}
			if last.GetCompleted() == nil {
				ended <- fmt.Errorf("the stream ended on %v, not on completed", last)
				return
			}
			ended <- nil
		}()
	}
	for range followers {
		if err := <-ready; err != nil {
			t.Fatalf("a follower: %v", err)
		}
	}

	// B's own answer, followed from A, keeps flowing.
	cb := b.ChatClient(t, "grpc", user)
	live, err := send(ctx, cb, create(t, cb, "live").Id, "go")
	if err != nil {
		t.Fatal(err)
	}
	liveID := next(t, live).GetStarted().GenerationId
	fakeB.Release(len(llmtest.DefaultChunks))
	if _, err := collect(t, live, 2); err != nil {
		t.Fatal(err)
	}
	// Everything B mirrored while its followers waited reaches A.
	remote, err := ca.ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: liveID, AfterSeq: 1}))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := collect(t, remote, 2)
	if err != nil {
		t.Fatalf("following B's answer from A while B serves %d followers: %v", followers, err)
	}
	if got, want := deltas(evs), strings.Join(llmtest.DefaultChunks, ""); got != want {
		t.Errorf("A saw %q of B's answer, want %q", got, want)
	}
	fakeA.Release(len(llmtest.DefaultChunks))
	for range followers {
		if err := <-ended; err != nil {
			t.Fatalf("a follower of A's answer: %v", err)
		}
	}
}

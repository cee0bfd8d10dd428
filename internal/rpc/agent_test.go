package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/qstash"
	"github.com/parleyhq/parley/internal/qstash/qstashtest"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/server"
)

// agentScript answers agent steps as a model with tools would: the
// research step searches first, the execute step writes a document
// first, and every turn after a tool result (or without tools) says which
// step it is.
func agentScript(r llmtest.RecordedRequest) llmtest.Turn {
	last := r.Messages[len(r.Messages)-1]
	if last.Role != "tool" {
		switch {
		case slices.Contains(r.Tools, agent.ToolSearch):
			return llmtest.Turn{Calls: []llmtest.Call{{ID: "call_s", Name: agent.ToolSearch, Arguments: `{"query":"oolong"}`}}}
		case slices.Contains(r.Tools, agent.ToolCreateArtifact):
			return llmtest.Turn{Calls: []llmtest.Call{{ID: "call_w", Name: agent.ToolCreateArtifact,
				Arguments: `{"title":"Oolong notes","kind":"text","content":"# Oolong\n\nBrew at 90C."}`}}}
		}
	}
	step := "unknown"
	if _, rest, ok := strings.Cut(r.Messages[0].Content, " of 5: "); ok {
		step, _, _ = strings.Cut(rest, ".")
	}
	return llmtest.Turn{Chunks: []string{"The ", step, " step", " is done."}}
}

// agentEnv is a server whose model is the fake upstream answering with
// agentScript, with short agent timeouts for tests.
func agentEnv(t *testing.T, fake *llmtest.Server, opts apitest.Options) *apitest.Env {
	t.Helper()
	if fake == nil {
		fake = llmtest.NewServer(t, llmtest.Respond(agentScript))
	}
	tune := opts.Agent
	// Setting Agent is also what gives the server agent workers (fakeEnv).
	opts.Agent = func(c *agent.RunnerConfig) {
		c.RetryBackoff = 10 * time.Millisecond
		c.FlushInterval = 20 * time.Millisecond
		if tune != nil {
			tune(c)
		}
	}
	return fakeEnv(t, fake, opts)
}

// watchAll watches a run from afterSeq to its end and checks the seq rule.
func watchAll(t *testing.T, ctx context.Context, c parleyv1connect.AgentServiceClient, runID string, afterSeq int64) []*parleyv1.WatchRunResponse {
	t.Helper()
	stream, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: runID, AfterSeq: afterSeq}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var out []*parleyv1.WatchRunResponse
	for stream.Receive() {
		ev := stream.Msg()
		if want := afterSeq + int64(len(out)) + 1; ev.Seq != want {
			t.Errorf("event seq %d, want %d", ev.Seq, want)
		}
		out = append(out, ev)
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("watch: %v", err)
	}
	return out
}

// kinds names each event, with its step: "research:tool_call".
func kinds(evs []*parleyv1.WatchRunResponse) []string {
	var out []string
	for _, ev := range evs {
		k := fmt.Sprintf("%T", ev.Event)
		k = strings.TrimPrefix(k, "*parleyv1.WatchRunResponse_")
		if ev.Step != parleyv1.StepName_STEP_NAME_UNSPECIFIED {
			k = strings.ToLower(strings.TrimPrefix(ev.Step.String(), "STEP_NAME_")) + ":" + k
		}
		out = append(out, k)
	}
	return out
}

// compact drops repeated deltas, which depend on timing.
func compact(ks []string) []string {
	return slices.Compact(slices.Clone(ks))
}

var wholeRun = []string{
	"plan:StepStarted", "plan:Delta", "plan:StepFinished",
	"research:StepStarted", "research:ToolCall", "research:ToolResult", "research:Delta", "research:StepFinished",
	"analyze:StepStarted", "analyze:Delta", "analyze:StepFinished",
	"execute:StepStarted", "execute:ToolCall", "execute:ToolResult", "execute:Delta", "execute:StepFinished",
	"summarize:StepStarted", "summarize:Delta", "summarize:StepFinished",
	"RunFinished",
}

// checkWholeRun checks a run that went through every step once.
func checkWholeRun(t *testing.T, evs []*parleyv1.WatchRunResponse) *parleyv1.Run {
	t.Helper()
	if got := compact(kinds(evs)); !slices.Equal(got, wholeRun) {
		t.Fatalf("events:\n got %v\nwant %v", got, wholeRun)
	}
	run := evs[len(evs)-1].GetRunFinished().GetRun()
	if run.GetStatus() != parleyv1.RunStatus_RUN_STATUS_SUCCEEDED || run.GetSummary() != "The summarize step is done." {
		t.Errorf("run %v, summary %q", run.GetStatus(), run.GetSummary())
	}
	for _, s := range run.GetSteps() {
		if s.GetStatus() != parleyv1.StepStatus_STEP_STATUS_SUCCEEDED || s.GetAttempts() != 1 || s.GetOutput() == "" {
			t.Errorf("step %v: %v after %d attempts, output %q", s.GetName(), s.GetStatus(), s.GetAttempts(), s.GetOutput())
		}
	}
	if run.GetLastSeq() != evs[len(evs)-1].GetSeq() {
		t.Errorf("run last_seq %d, last event %d", run.GetLastSeq(), evs[len(evs)-1].GetSeq())
	}
	for _, ev := range evs {
		if r := ev.GetToolResult(); r != nil && r.GetIsError() {
			t.Errorf("tool %s failed: %s", r.GetName(), r.GetResult())
		}
	}
	return run
}

func startRun(t *testing.T, ctx context.Context, c parleyv1connect.AgentServiceClient, req *parleyv1.StartRunRequest) *parleyv1.Run {
	t.Helper()
	res, err := c.StartRun(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	return res.Msg.GetRun()
}

func TestAgentRunOnRiver(t *testing.T) {
	fake := llmtest.NewServer(t, llmtest.Respond(agentScript))
	env := agentEnv(t, fake, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx := testCtx(t)
			user := uuid.New()
			c := env.AgentClient(t, protocol, user)
			conv, err := env.ChatClient(t, protocol, user).CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "Tea"}))
			if err != nil {
				t.Fatal(err)
			}
			convID := conv.Msg.GetConversation().GetId()
			run := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Write notes on oolong tea", ConversationId: convID})
			if run.GetStatus() != parleyv1.RunStatus_RUN_STATUS_QUEUED || len(run.GetSteps()) != 5 {
				t.Fatalf("started run: %v with %d steps", run.GetStatus(), len(run.GetSteps()))
			}
			evs := watchAll(t, ctx, c, run.GetId(), 0)
			ended := checkWholeRun(t, evs)

			// The execute step's document is an artifact of the user's.
			var artifactID string
			for _, ev := range evs {
				if r := ev.GetToolResult(); r != nil && r.GetName() == agent.ToolCreateArtifact {
					artifactID = r.GetArtifactId()
				}
			}
			got, err := env.ArtifactClient(t, protocol, user).GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: artifactID}))
			if err != nil || got.Msg.GetVersion().GetContent() != "# Oolong\n\nBrew at 90C." {
				t.Fatalf("the run's artifact %q: %v, %v", artifactID, got, err)
			}
			// The summary is the conversation's new last message.
			msgs, err := env.ChatClient(t, protocol, user).ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: convID}))
			if err != nil {
				t.Fatal(err)
			}
			ms := msgs.Msg.GetMessages()
			if len(ms) != 1 || ms[0].GetContent() != ended.GetSummary() || ms[0].GetId() != ended.GetSummaryMessageId() {
				t.Fatalf("conversation messages %v, want the summary as message %s", ms, ended.GetSummaryMessageId())
			}
			// GetRun and ListRuns agree with the stream's end.
			again, err := c.GetRun(ctx, connect.NewRequest(&parleyv1.GetRunRequest{RunId: run.GetId()}))
			if err != nil || again.Msg.GetRun().GetSummary() != ended.GetSummary() {
				t.Fatalf("GetRun: %v, %v", again, err)
			}
			list, err := c.ListRuns(ctx, connect.NewRequest(&parleyv1.ListRunsRequest{}))
			if err != nil || len(list.Msg.GetRuns()) != 1 || list.Msg.GetRuns()[0].GetId() != run.GetId() {
				t.Fatalf("ListRuns: %v, %v", list, err)
			}
			// A watch that starts halfway replays exactly the rest.
			half := int64(len(evs) / 2)
			rest := watchAll(t, ctx, c, run.GetId(), half)
			if !slices.Equal(kinds(rest), kinds(evs[half:])) {
				t.Errorf("watch from %d:\n got %v\nwant %v", half, kinds(rest), kinds(evs[half:]))
			}
		})
	}
	// The research step's model saw its tool's result.
	var sawSearch bool
	for _, r := range fake.Requests() {
		for _, m := range r.Messages {
			sawSearch = sawSearch || (m.Role == "tool" && strings.Contains(m.Content, `"results"`))
		}
	}
	if !sawSearch {
		t.Error("no model request carried the search tool's results")
	}
}

func TestAgentRunOnQStash(t *testing.T) {
	q := qstashtest.New(t)
	env := agentEnv(t, nil, apitest.Options{QStash: q})
	ctx := testCtx(t)
	c := env.AgentClient(t, "connect+json", uuid.New())
	run := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Write notes on oolong tea"})
	checkWholeRun(t, watchAll(t, ctx, c, run.GetId(), 0))
	pubs := q.Published()
	if len(pubs) != 5 {
		t.Fatalf("%d tasks published, want one per step", len(pubs))
	}
	for i, p := range pubs {
		if want := fmt.Sprintf("%s_%d_1", run.GetId(), i); p.Header.Get("Upstash-Deduplication-Id") != want {
			t.Errorf("publish %d: deduplication id %q, want %q", i, p.Header.Get("Upstash-Deduplication-Id"), want)
		}
		if want := env.URL + "/tasks/agent-step"; p.Destination != want {
			t.Errorf("publish %d to %q, want %q", i, p.Destination, want)
		}
	}

	// A finished step delivered again (another message id) runs nothing.
	before := watchAll(t, ctx, c, run.GetId(), 0)
	body := fmt.Sprintf(`{"run_id":%q,"step":2,"attempt":1}`, run.GetId())
	pub := qstash.NewPublisher(q.URL(), q.Token())
	if _, err := pub.Publish(ctx, qstash.Message{Destination: env.URL + "/tasks/agent-step", Body: []byte(body), DeduplicationID: "again", Retries: qstash.DefaultRetries}); err != nil {
		t.Fatal(err)
	}
	q.WaitSucceeded(6, 10*time.Second)
	after := watchAll(t, ctx, c, run.GetId(), 0)
	if len(after) != len(before) {
		t.Errorf("a redelivered step added %d events", len(after)-len(before))
	}

	// Unsigned deliveries are refused and run nothing.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, env.URL+"/tasks/agent-step", strings.NewReader(body))
	req.Header.Set("Upstash-Message-Id", "msg_forged")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned delivery: %d, want 401", res.StatusCode)
	}
}

// A watch on one instance follows a run that steps on another: b runs no
// steps, and started the run, so every event it sends came from a.
func TestAgentWatchFromAnotherInstance(t *testing.T) {
	fake := llmtest.NewServer(t, llmtest.Respond(agentScript), llmtest.Interval(5*time.Millisecond))
	agentEnv(t, fake, apitest.Options{}) // a, the instance that runs the steps
	b := agentEnv(t, fake, apitest.Options{NoAgentWorkers: true})
	ctx := testCtx(t)
	user := uuid.New()
	run := startRun(t, ctx, b.AgentClient(t, "grpc", user), &parleyv1.StartRunRequest{Goal: "Write notes on oolong tea"})
	checkWholeRun(t, watchAll(t, ctx, b.AgentClient(t, "grpcweb", user), run.GetId(), 0))
}

func TestAgentRetryThenFailure(t *testing.T) {
	fake := llmtest.NewServer(t, llmtest.Respond(agentScript), llmtest.Fail(http.StatusServiceUnavailable, "overloaded", "The engine is overloaded."))
	env := agentEnv(t, fake, apitest.Options{Agent: func(c *agent.RunnerConfig) { c.MaxAttempts = 3 }})
	ctx := testCtx(t)
	c := env.AgentClient(t, "connect+proto", uuid.New())
	run := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Plan a trip"})
	evs := watchAll(t, ctx, c, run.GetId(), 0)
	want := []string{"plan:StepStarted", "plan:StepRetrying", "plan:StepStarted", "plan:StepRetrying", "plan:StepStarted", "RunFailed"}
	if got := kinds(evs); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	ended := evs[len(evs)-1].GetRunFailed().GetRun()
	if ended.GetStatus() != parleyv1.RunStatus_RUN_STATUS_FAILED || !strings.Contains(ended.GetError(), "after 3 attempts") {
		t.Errorf("failed run: %v, error %q", ended.GetStatus(), ended.GetError())
	}
	if s := ended.GetSteps()[0]; s.GetStatus() != parleyv1.StepStatus_STEP_STATUS_FAILED || s.GetAttempts() != 3 || s.GetError() == "" {
		t.Errorf("plan step: %v after %d attempts, error %q", s.GetStatus(), s.GetAttempts(), s.GetError())
	}
	if strings.Contains(ended.GetError(), "sk-test") {
		t.Errorf("the error shows the provider's credential: %q", ended.GetError())
	}
}

func TestAgentRetryThenSuccess(t *testing.T) {
	fake := llmtest.NewServer(t, llmtest.Respond(agentScript), llmtest.Fail500(), llmtest.Times(1))
	env := agentEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	c := env.AgentClient(t, "connect+json", uuid.New())
	run := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Write notes on oolong tea"})
	evs := watchAll(t, ctx, c, run.GetId(), 0)
	got := compact(kinds(evs))
	if !slices.Equal(got[:3], []string{"plan:StepStarted", "plan:StepRetrying", "plan:StepStarted"}) || got[len(got)-1] != "RunFinished" {
		t.Fatalf("events %v", got)
	}
	if s := evs[len(evs)-1].GetRunFinished().GetRun().GetSteps()[0]; s.GetAttempts() != 2 {
		t.Errorf("plan step took %d attempts, want 2", s.GetAttempts())
	}
}

func TestAgentCancelMidStep(t *testing.T) {
	fake := llmtest.NewServer(t, llmtest.Respond(agentScript), llmtest.Hold())
	env := agentEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	c := env.AgentClient(t, "connect+json", uuid.New())
	run := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Plan a trip"})
	stream, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: run.GetId()}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	fake.Release(2) // "The " and "plan": then the model hangs mid-step
	var text string
	for text != "The plan" && stream.Receive() {
		text += stream.Msg().GetDelta().GetText()
	}
	res, err := c.CancelRun(ctx, connect.NewRequest(&parleyv1.CancelRunRequest{RunId: run.GetId()}))
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Msg.GetRun().GetStatus(); s != parleyv1.RunStatus_RUN_STATUS_RUNNING && s != parleyv1.RunStatus_RUN_STATUS_CANCELED {
		t.Fatalf("CancelRun answered %v", s)
	}
	var last *parleyv1.WatchRunResponse
	for stream.Receive() {
		last = stream.Msg()
	}
	ended := last.GetRunCanceled().GetRun()
	if ended.GetStatus() != parleyv1.RunStatus_RUN_STATUS_CANCELED {
		t.Fatalf("last event %v", last)
	}
	if s := ended.GetSteps()[0]; s.GetStatus() != parleyv1.StepStatus_STEP_STATUS_CANCELED || s.GetOutput() != "The plan" {
		t.Errorf("plan step %v with output %q, want canceled with the partial text", s.GetStatus(), s.GetOutput())
	}
	if !fake.WaitCanceled(1, 5*time.Second) {
		t.Error("the model call was not interrupted")
	}
	if s := ended.GetSteps()[1]; s.GetStatus() != parleyv1.StepStatus_STEP_STATUS_CANCELED && s.GetAttempts() != 0 {
		t.Errorf("research step %v, attempts %d: it must never start", s.GetStatus(), s.GetAttempts())
	}
	// Canceling again changes nothing.
	again, err := c.CancelRun(ctx, connect.NewRequest(&parleyv1.CancelRunRequest{RunId: run.GetId()}))
	if err != nil || again.Msg.GetRun().GetEndTime().AsTime() != ended.GetEndTime().AsTime() {
		t.Errorf("second cancel: %v, %v", again, err)
	}
}

func TestAgentInput(t *testing.T) {
	env := agentEnv(t, nil, apitest.Options{})
	ctx := testCtx(t)
	owner, other := uuid.New(), uuid.New()
	c := env.AgentClient(t, "connect+json", owner)
	run := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Plan a trip", RequestId: "r1"})
	watchAll(t, ctx, c, run.GetId(), 0)

	tests := []struct {
		name string
		call func(parleyv1connect.AgentServiceClient) error
		code connect.Code
		msg  string
	}{
		{"NoGoal", func(c parleyv1connect.AgentServiceClient) error {
			_, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: "  "}))
			return err
		}, connect.CodeInvalidArgument, "goal"},
		{"LongGoal", func(c parleyv1connect.AgentServiceClient) error {
			_, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: strings.Repeat("a", agent.MaxGoalRunes+1)}))
			return err
		}, connect.CodeInvalidArgument, "goal"},
		{"UnknownTool", func(c parleyv1connect.AgentServiceClient) error {
			_, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: "x", Tools: []parleyv1.AgentTool{0}}))
			return err
		}, connect.CodeInvalidArgument, "tools"},
		{"UnknownModel", func(c parleyv1connect.AgentServiceClient) error {
			_, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: "x", Model: "gpt-9"}))
			return err
		}, connect.CodeInvalidArgument, "model"},
		{"OtherUsersConversation", func(c parleyv1connect.AgentServiceClient) error {
			conv, err := env.ChatClient(t, "connect+json", owner).CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{}))
			if err != nil {
				return err
			}
			_, err = env.AgentClient(t, "connect+json", other).StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: "x", ConversationId: conv.Msg.GetConversation().GetId()}))
			return err
		}, connect.CodeNotFound, "conversation"},
		{"BadRunID", func(c parleyv1connect.AgentServiceClient) error {
			_, err := c.GetRun(ctx, connect.NewRequest(&parleyv1.GetRunRequest{RunId: "nope"}))
			return err
		}, connect.CodeInvalidArgument, "run_id"},
		{"OtherUsersGet", func(parleyv1connect.AgentServiceClient) error {
			_, err := env.AgentClient(t, "connect+json", other).GetRun(ctx, connect.NewRequest(&parleyv1.GetRunRequest{RunId: run.GetId()}))
			return err
		}, connect.CodeNotFound, "agent run"},
		{"OtherUsersCancel", func(parleyv1connect.AgentServiceClient) error {
			_, err := env.AgentClient(t, "connect+json", other).CancelRun(ctx, connect.NewRequest(&parleyv1.CancelRunRequest{RunId: run.GetId()}))
			return err
		}, connect.CodeNotFound, "agent run"},
		{"OtherUsersWatch", func(parleyv1connect.AgentServiceClient) error {
			s, err := env.AgentClient(t, "connect+json", other).WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: run.GetId()}))
			if err != nil {
				return err
			}
			defer s.Close()
			for s.Receive() {
			}
			return s.Err()
		}, connect.CodeNotFound, "agent run"},
		{"WatchPastTheEnd", func(c parleyv1connect.AgentServiceClient) error {
			s, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: run.GetId(), AfterSeq: 10_000}))
			if err != nil {
				return err
			}
			defer s.Close()
			for s.Receive() {
			}
			return s.Err()
		}, connect.CodeInvalidArgument, "after_seq"},
		{"BadPageToken", func(c parleyv1connect.AgentServiceClient) error {
			_, err := c.ListRuns(ctx, connect.NewRequest(&parleyv1.ListRunsRequest{PageToken: "x"}))
			return err
		}, connect.CodeInvalidArgument, "page_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(c)
			if connect.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
		})
	}

	t.Run("WatchAfterTheEnd", func(t *testing.T) {
		// A watcher that saw the last event and reconnects gets a stream
		// that ends at once, not one that waits.
		evs := watchAll(t, ctx, c, run.GetId(), runLastSeq(t, ctx, c, run.GetId()))
		if len(evs) != 0 {
			t.Errorf("%d events after the end", len(evs))
		}
	})
	t.Run("RequestIDRepeats", func(t *testing.T) {
		again := startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Something else", RequestId: "r1"})
		if again.GetId() != run.GetId() || again.GetGoal() != "Plan a trip" {
			t.Errorf("a repeated request id started run %s (%q), want %s", again.GetId(), again.GetGoal(), run.GetId())
		}
	})
}

func runLastSeq(t *testing.T, ctx context.Context, c parleyv1connect.AgentServiceClient, runID string) int64 {
	t.Helper()
	res, err := c.GetRun(ctx, connect.NewRequest(&parleyv1.GetRunRequest{RunId: runID}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetRun().GetLastSeq()
}

func TestAgentRunsInProgressCap(t *testing.T) {
	fake := llmtest.NewServer(t, llmtest.Respond(agentScript), llmtest.Hold())
	env := agentEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	c := env.AgentClient(t, "connect+json", uuid.New())
	for range agent.DefaultMaxActive {
		startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Plan a trip"})
	}
	_, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: "One more"}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("run over the cap: %v", err)
	}
	// Another user is not affected.
	startRun(t, ctx, env.AgentClient(t, "connect+json", uuid.New()), &parleyv1.StartRunRequest{Goal: "Plan a trip"})
}

// The agent rate-limit class allows 5 starts a minute on the free plan.
func TestAgentStartsAreRateLimited(t *testing.T) {
	limits := server.RateLimits{Chat: ratelimit.PerMinute(100), Agent: ratelimit.PerMinute(5), General: ratelimit.PerMinute(1000)}
	env := agentEnv(t, nil, apitest.Options{RateLimits: &limits, AgentMaxActiveRuns: 10})
	ctx := testCtx(t)
	c := env.AgentClient(t, "connect+json", uuid.New())
	for i := range 5 {
		startRun(t, ctx, c, &parleyv1.StartRunRequest{Goal: "Plan a trip", RequestId: fmt.Sprint(i)})
	}
	_, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: "Plan a trip", RequestId: "5"}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("the sixth start in a minute: %v, want resource_exhausted", err)
	}
	// Reading runs is another class.
	if _, err := c.ListRuns(ctx, connect.NewRequest(&parleyv1.ListRunsRequest{})); err != nil {
		t.Errorf("ListRuns after the agent limit: %v", err)
	}
}

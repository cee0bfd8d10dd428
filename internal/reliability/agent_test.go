package reliability

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// stepOf names the agent step a model request is for, from its system
// prompt ("... step N of 5: research. ..."); "" for other requests.
func stepOf(r llmtest.RecordedRequest) string {
	if len(r.Messages) == 0 {
		return ""
	}
	_, rest, ok := strings.Cut(r.Messages[0].Content, " of 5: ")
	if !ok {
		return ""
	}
	step, _, _ := strings.Cut(rest, ".")
	return step
}

// stepScript answers every agent step without tools, naming the step and
// the run's goal, so each step is exactly one model request.
func stepScript(r llmtest.RecordedRequest) llmtest.Turn {
	step := stepOf(r)
	if step == "" {
		return llmtest.Turn{Chunks: llmtest.DefaultChunks}
	}
	return llmtest.Turn{Chunks: []string{"The ", step, " step", " is done."}}
}

// steps are the agent's steps, in order.
var steps = []string{"plan", "research", "analyze", "execute", "summarize"}

// stepRequests counts the model requests per step of the runs whose goal
// holds goal.
func stepRequests(m *llmtest.Server, goal string) map[string]int {
	n := map[string]int{}
	for _, r := range m.Requests() {
		if step := stepOf(r); step != "" && strings.Contains(r.Messages[0].Content+lastUser(r), goal) {
			n[step]++
		}
	}
	return n
}

// lastUser is the content of a request's user messages, where the goal is.
func lastUser(r llmtest.RecordedRequest) string {
	var b strings.Builder
	for _, m := range r.Messages {
		if m.Role == "user" {
			b.WriteString(m.Content)
		}
	}
	return b.String()
}

// startRun starts a run for goal through c and returns its id.
func startRun(tb testing.TB, ctx context.Context, c parleyv1connect.AgentServiceClient, goal string) string {
	tb.Helper()
	res, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: goal}))
	if err != nil {
		tb.Fatalf("StartRun: %v", err)
	}
	tally.runs.Add(1)
	return res.Msg.Run.Id
}

// watchRun watches a run from its start to its end through c, checking
// that no event is lost or repeated, and returns the run as it ended.
func watchRun(tb testing.TB, ctx context.Context, c parleyv1connect.AgentServiceClient, runID string) *parleyv1.Run {
	tb.Helper()
	stream, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: runID}))
	if err != nil {
		tb.Fatalf("WatchRun: %v", err)
	}
	defer stream.Close()
	var seq int64
	for stream.Receive() {
		ev := stream.Msg()
		if ev.Seq != seq+1 {
			tb.Errorf("run %s: event seq %d after %d", runID, ev.Seq, seq)
		}
		seq = ev.Seq
	}
	if err := stream.Err(); err != nil {
		tb.Fatalf("WatchRun %s ended with %v (after seq %d)", runID, err, seq)
	}
	got, err := c.GetRun(ctx, connect.NewRequest(&parleyv1.GetRunRequest{RunId: runID}))
	if err != nil {
		tb.Fatalf("GetRun: %v", err)
	}
	if got.Msg.Run.LastSeq != seq {
		tb.Errorf("run %s: watched to seq %d, the run's last is %d", runID, seq, got.Msg.Run.LastSeq)
	}
	return got.Msg.Run
}

// wantRanOnce checks a run succeeded with every step run once: one
// attempt, one model request (plus extra[step] requests the test caused).
func wantRanOnce(tb testing.TB, run *parleyv1.Run, requests map[string]int, extra map[string]int) {
	tb.Helper()
	if run.Status != parleyv1.RunStatus_RUN_STATUS_SUCCEEDED {
		tb.Fatalf("run %s ended %s (%q), want succeeded", run.Id, run.Status, run.Error)
	}
	for i, s := range run.Steps {
		name := steps[i]
		if s.Status != parleyv1.StepStatus_STEP_STATUS_SUCCEEDED || s.Attempts != 1 {
			tb.Errorf("run %s step %s: %s after %d attempts, want succeeded once", run.Id, name, s.Status, s.Attempts)
		}
		if want := "The " + name + " step is done."; s.Output != want {
			tb.Errorf("run %s step %s output %q, want %q", run.Id, name, s.Output, want)
		}
		if want := 1 + extra[name]; requests[name] != want {
			tb.Errorf("run %s step %s asked the model %d times, want %d", run.Id, name, requests[name], want)
		}
	}
}

// waitRequests waits until the model has received n requests in all.
func waitRequests(tb testing.TB, m *llmtest.Server, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(m.Requests()) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("the model received %d requests in 30s, want %d", len(m.Requests()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPostgresRestartMidAgentStep: PostgreSQL stops while an agent step
// asks the model and starts again a moment later. The step's outcome is
// saved once the database is back (not run again: the model is asked once
// per step) and the run goes on to the end on the queue in PostgreSQL.
func TestPostgresRestartMidAgentStep(t *testing.T) {
	c := newCluster(t, options{Instances: 2, Model: []llmtest.Option{llmtest.Hold(), llmtest.Respond(stepScript)}})
	ctx := testContext(t, 2*time.Minute)
	token := c.Supabase.Token(t, newUser())
	runID := startRun(t, ctx, c.Agent(0, token), "restart-mid-step")
	waitRequests(t, c.Model, 1)
	c.PG.Stop()
	c.Model.Release(1 << 10)
	time.Sleep(time.Second) // the step ends; its save is refused, and retried
	c.PG.Start()
	run := watchRun(t, ctx, c.Agent(1, token), runID)
	wantRanOnce(t, run, stepRequests(c.Model, "restart-mid-step"), nil)
}

// TestSIGTERMMidAgentStep: the instance running an agent step gets SIGTERM
// (Cloud Run scaling in). It gives the step back within its grace period;
// another instance runs the same attempt again to the end, and the run
// finishes with every step saved once.
func TestSIGTERMMidAgentStep(t *testing.T) {
	// parley-1 starts after the step is claimed, so parley-0 holds it.
	c := newCluster(t, options{Instances: 2, Deferred: []int{1}, Model: []llmtest.Option{llmtest.Hold(), llmtest.Respond(stepScript)}})
	ctx := testContext(t, 2*time.Minute)
	token := c.Supabase.Token(t, newUser())
	runID := startRun(t, ctx, c.Agent(0, token), "sigterm-mid-step")
	waitRequests(t, c.Model, 1)
	c.Start(1)
	if err := c.Inst[0].Terminate(t); err != nil {
		t.Errorf("parley-0 after SIGTERM: %v, want a clean exit", err)
	}
	c.Model.Release(1 << 10)
	run := watchRun(t, ctx, c.Agent(1, token), runID)
	// The plan step was asked twice: parley-0's request, cut by the
	// shutdown, and parley-1's.
	wantRanOnce(t, run, stepRequests(c.Model, "sigterm-mid-step"), map[string]int{"plan": 1})
}

// TestAgentUpstreamFaults: a model failing during a step (500, 429, a cut
// stream, a malformed chunk) makes the step retry with backoff and the run
// go on; a model that keeps failing fails
// the run honestly after the configured attempts, with nothing stranded.
func TestAgentUpstreamFaults(t *testing.T) {
	c := newCluster(t, options{Instances: 2, Env: []string{"AGENT_MAX_ATTEMPTS", "2"}, Model: []llmtest.Option{llmtest.Respond(stepScript)}})
	ctx := testContext(t, 2*time.Minute)
	token := c.Supabase.Token(t, newUser())

	// Each fault hits the plan step's first request only.
	for i, tc := range []struct {
		name         string
		fault, reset []llmtest.Option
	}{
		{"500", []llmtest.Option{llmtest.Fail500(), llmtest.Times(1)}, nil},
		{"429", []llmtest.Option{llmtest.Fail429("1"), llmtest.Times(1)}, nil},
		{"cut", []llmtest.Option{llmtest.CutAfter(1)}, []llmtest.Option{llmtest.CutAfter(-1)}},
		{"malformed", []llmtest.Option{llmtest.MalformedAfter(1)}, []llmtest.Option{llmtest.MalformedAfter(-1)}},
	} {
		before := len(c.Model.Requests())
		c.Model.Configure(tc.fault...)
		fault("model " + tc.name + " in a step")
		goal := "fails-once-" + tc.name + ";"
		runID := startRun(t, ctx, c.Agent(i%2, token), goal)
		waitRequests(t, c.Model, before+1)
		c.Model.Configure(tc.reset...) // the retry comes 2 s later
		run := watchRun(t, ctx, c.Agent((i+1)%2, token), runID)
		if run.Status != parleyv1.RunStatus_RUN_STATUS_SUCCEEDED || run.Steps[0].Attempts != 2 {
			t.Errorf("run after one %s: %s, plan attempts %d (%q); want succeeded on the second attempt", tc.name, run.Status, run.Steps[0].Attempts, run.Error)
		}
		if n := stepRequests(c.Model, goal); n["plan"] != 2 || n["research"] != 1 {
			t.Errorf("run after one %s asked the model %v, want plan twice and every other step once", tc.name, n)
		}
	}

	c.Model.Configure(llmtest.Fail500())
	fault("model 500 in a step")
	runID := startRun(t, ctx, c.Agent(1, token), "fails-always")
	run := watchRun(t, ctx, c.Agent(0, token), runID)
	if run.Status != parleyv1.RunStatus_RUN_STATUS_FAILED || run.Steps[0].Attempts != 2 || run.Error == "" {
		t.Errorf("run on a failing model: %s after %d attempts (%q); want failed after 2 with a reason", run.Status, run.Steps[0].Attempts, run.Error)
	}
	for _, leak := range []string{"127.0.0.1", "500 Internal", "http://"} {
		if strings.Contains(run.Error, leak) {
			t.Errorf("the run's error shows internals: %q", run.Error)
		}
	}
}

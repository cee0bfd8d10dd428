package agent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/chat/chattest"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// These tests run the step handler on the real store (PostgreSQL) with a
// model the test writes, delivering tasks by hand the way a queue does,
// including the ways a queue misbehaves: twice at once, again after the
// end, after the instance holding a step died.

func TestMain(m *testing.M) { pgtest.Main(m) }

// queued records the tasks the store queues (the queue under test is the
// store's transaction; delivery is the test's).
type queued struct {
	mu    sync.Mutex
	tasks []agent.Task
}

func (q *queued) EnqueueTx(_ context.Context, _ pgx.Tx, t agent.Task, _ time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tasks = append(q.tasks, t)
	return nil
}

func (q *queued) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.tasks)
}

func (q *queued) last() agent.Task {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.tasks[len(q.tasks)-1]
}

type rig struct {
	store  *store.Agents
	queue  *queued
	model  *chattest.Model
	models *chat.Models
	svc    *agent.Service
}

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigOn(t, store.New(pgtest.PoolFor(t, store.PrepareConn)))
}

// newRigOn is a rig on st's database.
func newRigOn(t *testing.T, s *store.Store) *rig {
	t.Helper()
	q := &queued{}
	st := s.Agents(q)
	model := chattest.NewModel()
	models := chat.NewModels().Add(model, "test-model")
	return &rig{store: st, queue: q, model: model, models: models, svc: agent.NewService(st, models, agent.NewHub(), nil, agent.ServiceConfig{})}
}

func (r *rig) runner(cfg agent.RunnerConfig) *agent.Runner {
	cfg.FlushInterval = 10 * time.Millisecond
	return agent.NewRunner(r.store, r.models, nil, nil, cfg)
}

func (r *rig) start(t *testing.T, user uuid.UUID) agent.Run {
	t.Helper()
	run, err := r.svc.Start(t.Context(), user, agent.StartRequest{Goal: "Plan a trip"})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func (r *rig) events(t *testing.T, userID, runID uuid.UUID) []agent.Event {
	t.Helper()
	evs, err := r.store.Events(t.Context(), userID, runID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// The same step delivered to two instances at once runs once: the second
// delivery finds the lease held and is told to come back; once the step
// has ended, a delivery of it again is acknowledged and runs nothing.
func TestStepDeliveredTwiceAtOnce(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	run := r.start(t, user)
	task := r.queue.last()
	a, b := r.runner(agent.RunnerConfig{}), r.runner(agent.RunnerConfig{})

	first := make(chan error, 1)
	go func() { first <- a.Handle(context.Background(), task) }()
	turn := r.model.Next(5 * time.Second)
	if turn == nil {
		t.Fatal("the first delivery did not ask the model")
	}
	err := b.Handle(context.Background(), task)
	busy, ok := agent.IsBusy(err)
	if !ok || busy.RetryAfter <= 0 {
		t.Fatalf("second delivery while the first runs: %v, want a BusyError with a wait", err)
	}
	turn.Say("1. Pack.")
	turn.End(chat.Usage{PromptTokens: 10, CompletionTokens: 3}, "stop")
	if err := <-first; err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if err := b.Handle(context.Background(), task); err != nil {
		t.Fatalf("delivery of the finished step: %v, want nil (acknowledged)", err)
	}
	if n := len(r.model.Requests()); n != 1 {
		t.Errorf("the model was asked %d times, want once", n)
	}
	got, err := r.store.GetRun(t.Context(), user, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	plan := got.Steps[0]
	if plan.Status != agent.StepSucceeded || plan.Attempt != 1 || plan.Output != "1. Pack." || plan.TotalTokens != 13 {
		t.Errorf("plan step after two deliveries: %+v", plan)
	}
	if got.Steps[1].Attempt != 1 || r.queue.last() != (agent.Task{RunID: run.ID, Step: 1, Attempt: 1}) {
		t.Errorf("next step %+v, last task %+v: want research queued once as attempt 1", got.Steps[1], r.queue.last())
	}
	var started int
	for _, ev := range r.events(t, user, run.ID) {
		if ev.Kind == agent.EventStepStarted {
			started++
		}
	}
	if started != 1 {
		t.Errorf("%d step_started events, want 1", started)
	}
}

// A step whose instance died (its lease lapsed, nothing saved) is run by
// the next delivery, and the dead instance can no longer save anything.
func TestStepTakenOverAfterLeaseExpires(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	run := r.start(t, user)
	task := r.queue.last()
	// The "dead" instance claims the step, then stops renewing: its flush
	// loop is slower than its lease.
	dead := agent.NewRunner(r.store, r.models, nil, nil, agent.RunnerConfig{Lease: time.Second, FlushInterval: time.Hour})
	deadDone := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { deadDone <- dead.Handle(ctx, task) }()
	stale := r.model.Next(5 * time.Second)
	if stale == nil {
		t.Fatal("the first delivery did not ask the model")
	}
	time.Sleep(1200 * time.Millisecond) // the lease lapses
	live := r.runner(agent.RunnerConfig{})
	done := make(chan error, 1)
	go func() { done <- live.Handle(context.Background(), task) }()
	turn := r.model.Next(5 * time.Second)
	if turn == nil {
		t.Fatal("the second delivery did not take the step over")
	}
	turn.Say("taken over")
	turn.End(chat.Usage{}, "stop")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The dead instance wakes up and finishes: its outcome is not saved.
	stale.Say("stale")
	stale.End(chat.Usage{}, "stop")
	if err := <-deadDone; err != nil {
		t.Fatalf("the old delivery: %v, want nil (it lost the lease)", err)
	}
	got, err := r.store.GetRun(t.Context(), user, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps[0].Output != "taken over" {
		t.Errorf("plan output %q, want the live delivery's", got.Steps[0].Output)
	}
}

// A task for an attempt that is not the step's current one is stale.
func TestStaleAttemptRunsNothing(t *testing.T) {
	r := newRig(t)
	run := r.start(t, uuid.New())
	err := r.runner(agent.RunnerConfig{}).Handle(context.Background(), agent.Task{RunID: run.ID, Step: 0, Attempt: 2})
	if err != nil || len(r.model.Requests()) != 0 {
		t.Errorf("stale task: %v, %d model calls", err, len(r.model.Requests()))
	}
	if err := r.runner(agent.RunnerConfig{}).Handle(context.Background(), agent.Task{RunID: run.ID, Step: 3, Attempt: 1}); err != nil {
		t.Errorf("task for a step not yet queued: %v", err)
	}
	if len(r.model.Requests()) != 0 {
		t.Error("a task for a step not yet queued asked the model")
	}
}

// A step's time limit cuts its model call; the attempt is retried.
func TestStepTimeoutRetries(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	run := r.start(t, user)
	r.model.Hang()
	err := r.runner(agent.RunnerConfig{StepTimeout: 200 * time.Millisecond, RetryBackoff: time.Millisecond}).
		Handle(context.Background(), r.queue.last())
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.store.GetRun(t.Context(), user, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Steps[0]; s.Status != agent.StepPending || s.Attempt != 2 || s.Error == "" {
		t.Errorf("plan step after a timeout: %+v, want pending attempt 2 with the reason", s)
	}
	if r.queue.last() != (agent.Task{RunID: run.ID, Step: 0, Attempt: 2}) {
		t.Errorf("queued %+v, want the plan step's attempt 2", r.queue.last())
	}
}

// A quota used up fails the run at its next step, honestly.
func TestQuotaStopsRun(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	st := store.New(pgtest.PoolFor(t, store.PrepareConn))
	id := uuid.New()
	run, _, err := st.Agents(r.queue).CreateRun(t.Context(), agent.NewRun{
		ID: id, UserID: user, Goal: "g", Model: "test-model", Tools: agent.AllTools, QuotaTokens: 1,
	}, 3, agent.Task{RunID: id, Step: 0, Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Use the month's token: any chat or agent usage counts.
	if _, err := st.Pool().Exec(t.Context(), `INSERT INTO parley.token_usage (user_id, month, used_tokens) VALUES ($1, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 5)`, user); err != nil {
		t.Fatal(err)
	}
	if err := r.runner(agent.RunnerConfig{}).Handle(context.Background(), agent.Task{RunID: run.ID, Step: 0, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := r.store.GetRun(t.Context(), user, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != agent.StatusFailed || len(r.model.Requests()) != 0 {
		t.Errorf("run %s (%q) after %d model calls, want failed before any", got.Status, got.Error, len(r.model.Requests()))
	}
	if got.Error == "" || got.Steps[0].Status != agent.StepFailed {
		t.Errorf("plan step %s, run error %q: want failed with the reason", got.Steps[0].Status, got.Error)
	}
}

// recordingTools is a toolbox that counts its calls and answers each with
// a fixed result.
type recordingTools struct {
	mu    sync.Mutex
	calls []chat.ToolCall
}

func (r *recordingTools) Specs(names []string) []chat.ToolSpec {
	var out []chat.ToolSpec
	for _, n := range names {
		out = append(out, chat.ToolSpec{Name: n, Description: n, Parameters: []byte(`{"type":"object"}`)})
	}
	return out
}

func (r *recordingTools) Call(_ context.Context, _ agent.ToolCall, call chat.ToolCall) chat.ToolResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
	return chat.ToolResult{Content: `{"results":[]}`}
}

func (r *recordingTools) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// finishPlan runs the plan step of run to its end.
func (r *rig) finishPlan(t *testing.T, run agent.Run, runner *agent.Runner) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- runner.Handle(context.Background(), agent.Task{RunID: run.ID, Step: 0, Attempt: 1}) }()
	turn := r.model.Next(5 * time.Second)
	if turn == nil {
		t.Fatal("the plan step did not ask the model")
	}
	turn.Say("1. Look.")
	turn.End(chat.Usage{}, "stop")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A tool call an attempt made is replayed into the next attempt's prompt,
// not made again.
func TestRetryReplaysToolCalls(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	run := r.start(t, user)
	tools := &recordingTools{}
	runner := agent.NewRunner(r.store, r.models, tools, nil, agent.RunnerConfig{FlushInterval: 10 * time.Millisecond, RetryBackoff: time.Millisecond})
	r.finishPlan(t, run, runner)

	research := agent.Task{RunID: run.ID, Step: 1, Attempt: 1}
	done := make(chan error, 1)
	go func() { done <- runner.Handle(context.Background(), research) }()
	turn := r.model.Next(5 * time.Second)
	turn.Call(0, "call_1", agent.ToolSearch, `{"query":"tea"}`)
	turn.End(chat.Usage{}, "tool_calls")
	again := r.model.Next(5 * time.Second) // the turn after the tool result
	if again == nil {
		t.Fatal("no turn after the tool call")
	}
	again.Fail(apperr.New(apperr.Unavailable, "the model is overloaded"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if tools.count() != 1 {
		t.Fatalf("%d tool calls in the first attempt, want 1", tools.count())
	}

	go func() { done <- runner.Handle(context.Background(), agent.Task{RunID: run.ID, Step: 1, Attempt: 2}) }()
	retry := r.model.Next(5 * time.Second)
	if retry == nil {
		t.Fatal("the second attempt did not ask the model")
	}
	var sawCall, sawResult bool
	for _, m := range retry.Request.Messages {
		sawCall = sawCall || (m.Role == chat.RoleAssistant && len(m.ToolCalls) == 1 && m.ToolCalls[0].ID == "call_1")
		sawResult = sawResult || (m.Role == chat.RoleTool && m.ToolCallID == "call_1" && m.Content == `{"results":[]}`)
	}
	if !sawCall || !sawResult {
		t.Errorf("the second attempt's prompt lacks the first attempt's tool call (%v) or its result (%v)", sawCall, sawResult)
	}
	retry.Say("Nothing found.")
	retry.End(chat.Usage{}, "stop")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if tools.count() != 1 {
		t.Errorf("the tool ran %d times over two attempts, want once", tools.count())
	}
}

// A step whose delivery ends (the queue stops, the instance shuts down)
// gives itself back: the same attempt is pending again, not counted as a
// failure, and the next delivery runs it at once.
func TestInterruptedStepIsGivenBack(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	run := r.start(t, user)
	runner := r.runner(agent.RunnerConfig{})
	task := r.queue.last()
	done := make(chan error, 1)
	go func() { done <- runner.Handle(context.Background(), task) }()
	turn := r.model.Next(5 * time.Second)
	turn.Say("1. Pa")
	runner.Interrupt()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted delivery: %v, want an error wrapping context.Canceled", err)
	}
	got, err := r.store.GetRun(t.Context(), user, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Steps[0]; s.Status != agent.StepPending || s.Attempt != 1 || s.Error != "" {
		t.Fatalf("plan step after the interrupt: %+v, want pending attempt 1", s)
	}
	// The next delivery of the same task runs it at once.
	go func() { done <- r.runner(agent.RunnerConfig{}).Handle(context.Background(), task) }()
	again := r.model.Next(5 * time.Second)
	if again == nil {
		t.Fatal("the next delivery did not run the step")
	}
	again.Say("1. Pack.")
	again.End(chat.Usage{}, "stop")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The sweep queues again a step nothing works on, once per stale spell.
func TestSweepRequeuesStrandedStep(t *testing.T) {
	// A database of its own: the sweep takes every stranded run.
	own, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Close)
	r := newRigOn(t, own)
	run := r.start(t, uuid.New())
	runner := r.runner(agent.RunnerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go runner.Sweep(ctx, agent.SweepConfig{Every: 20 * time.Millisecond, PendingFor: 300 * time.Millisecond, LeaseLapsedFor: time.Millisecond})
	deadline := time.After(10 * time.Second)
	for r.queue.last().Requeue == 0 {
		select {
		case <-deadline:
			t.Fatal("the stranded step was not queued again")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if want := (agent.Task{RunID: run.ID, Step: 0, Attempt: 1, Requeue: 1}); r.queue.last() != want {
		t.Errorf("requeued %+v, want %+v", r.queue.last(), want)
	}
	// Not again while the requeue is fresh (the run's update time moved).
	time.Sleep(150 * time.Millisecond)
	if n := r.queue.count(); n != 2 {
		t.Errorf("%d tasks queued, want the first and one requeue", n)
	}
	// The requeued task runs the step.
	done := make(chan error, 1)
	go func() { done <- runner.Handle(context.Background(), r.queue.last()) }()
	turn := r.model.Next(5 * time.Second)
	if turn == nil {
		t.Fatal("the requeued task did not run the step")
	}
	turn.Say("ok")
	turn.End(chat.Usage{}, "stop")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// StartRun refuses a run when the month's tokens are used up.
func TestQuotaRefusesStart(t *testing.T) {
	r := newRig(t)
	st := store.New(pgtest.PoolFor(t, store.PrepareConn))
	user := uuid.New()
	if _, err := st.Pool().Exec(t.Context(), `INSERT INTO parley.token_usage (user_id, month, used_tokens) VALUES ($1, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 100)`, user); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	now := time.Now().UTC()
	_, _, err := r.store.CreateRun(t.Context(), agent.NewRun{
		ID: id, UserID: user, Goal: "g", Model: "test-model", Tools: agent.AllTools, QuotaTokens: 100,
		Month: time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC),
	}, 3, agent.Task{RunID: id, Step: 0, Attempt: 1})
	if !errors.Is(err, agent.ErrQuotaExceeded) {
		t.Fatalf("CreateRun over the quota: %v, want ErrQuotaExceeded", err)
	}
}

// flakyEnd is the real store whose EndStep fails the first fails times
// without reaching the database, as a restarting database fails it, and
// counts the attempts.
type flakyEnd struct {
	*store.Agents
	mu             sync.Mutex
	fails, attempt int
}

func (f *flakyEnd) EndStep(ctx context.Context, e agent.StepEnd) error {
	f.mu.Lock()
	f.attempt++
	fail := f.attempt <= f.fails
	f.mu.Unlock()
	if fail {
		return apperr.Wrap(errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), apperr.Unavailable, "the database is unavailable")
	}
	return f.Agents.EndStep(ctx, e)
}

// A step whose model calls are done is saved once the database answers
// again: the outcome's write is retried, not the step, so the model is
// asked once and the next step queued once.
func TestStepEndSavedAfterDatabaseBlip(t *testing.T) {
	r := newRig(t)
	user := uuid.New()
	run := r.start(t, user)
	task := r.queue.last()
	flaky := &flakyEnd{Agents: r.store, fails: 2}
	runner := agent.NewRunner(flaky, r.models, nil, nil, agent.RunnerConfig{FlushInterval: 10 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- runner.Handle(context.Background(), task) }()
	turn := r.model.Next(5 * time.Second)
	if turn == nil {
		t.Fatal("the delivery did not ask the model")
	}
	turn.Say("1. Pack.")
	turn.End(chat.Usage{PromptTokens: 10, CompletionTokens: 3}, "stop")
	if err := <-done; err != nil {
		t.Fatalf("delivery: %v, want nil (saved on the third attempt)", err)
	}
	if flaky.attempt != 3 {
		t.Errorf("EndStep attempted %d times, want 3", flaky.attempt)
	}
	if n := len(r.model.Requests()); n != 1 {
		t.Errorf("the model was asked %d times, want once", n)
	}
	got, err := r.store.GetRun(t.Context(), user, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Steps[0]; s.Status != agent.StepSucceeded || s.Attempt != 1 || s.Output != "1. Pack." {
		t.Errorf("plan step: %+v, want succeeded on attempt 1", s)
	}
	if n := r.queue.count(); n != 2 {
		t.Errorf("%d tasks queued, want 2 (the start and the next step once)", n)
	}
}

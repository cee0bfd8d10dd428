package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
)

// RunnerConfig configures a Runner. Zero values take the defaults.
type RunnerConfig struct {
	// StepTimeout bounds one attempt of a step, model calls and tools
	// included (default 4 minutes: well inside Cloud Run's default request
	// timeout of 5, which bounds a QStash delivery).
	StepTimeout time.Duration
	// Lease is how long a delivery holds a step without renewing it
	// (default 30 s; renewed every Lease/6). A step whose instance died is
	// taken over by another delivery once its lease expires.
	Lease time.Duration
	// MaxAttempts bounds a step's attempts after transient failures
	// (default 3); then the run fails with the last error.
	MaxAttempts int
	// RetryBackoff is the wait before a step's second attempt, doubled for
	// each later one and capped at a minute (default 2 s).
	RetryBackoff time.Duration
	// FlushInterval is how often a running step's output is saved as
	// events for watchers (default 100 ms).
	FlushInterval time.Duration
	// MaxToolRounds bounds a step's model turns that call tools (default 4).
	MaxToolRounds int
	// MaxOutputTokens caps each model call; 0 leaves it to the provider.
	MaxOutputTokens int
	// MaxToolResultBytes bounds what a tool call tells the model (8 KiB).
	MaxToolResultBytes int
	Clock              clock.Clock
	Log                *slog.Logger
	// AfterSave, when set, runs after a step's outcome is committed and
	// before the delivery is acknowledged (tests crash the process there).
	AfterSave func(Task)
}

func (c *RunnerConfig) defaults() {
	if c.StepTimeout <= 0 {
		c.StepTimeout = 4 * time.Minute
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 2 * time.Second
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 100 * time.Millisecond
	}
	if c.MaxToolRounds <= 0 {
		c.MaxToolRounds = 4
	}
	if c.MaxToolResultBytes <= 0 {
		c.MaxToolResultBytes = 8 << 10
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Runner runs steps: the queues deliver each task to Handle.
type Runner struct {
	store  Store
	models Models
	tools  Tools
	wake   func(runID uuid.UUID) // after this instance saved events
	cfg    RunnerConfig

	mu      sync.Mutex
	running map[uuid.UUID]*stepRun // by run id, steps on this instance
}

// Tools runs the tools a step may call; the tools of tools.go are one.
type Tools interface {
	// Specs lists the tools among names, in a stable order.
	Specs(names []string) []chat.ToolSpec
	// Call runs one call for the user; failures are results the model
	// reads (IsError), never errors.
	Call(ctx context.Context, tc ToolCall, call chat.ToolCall) chat.ToolResult
}

// ToolCall says on whose behalf a tool runs.
type ToolCall struct {
	UserID, ConversationID uuid.UUID
	// RequestKey is the same for the same call of the same step, across
	// attempts; tools that write use it as their idempotency key.
	RequestKey string
}

// NewRunner returns a Runner. wake, when not nil, is told of every run
// whose events this instance saved (watchers on other instances learn of
// them from the store's notifications).
func NewRunner(store Store, models Models, tools Tools, wake func(uuid.UUID), cfg RunnerConfig) *Runner {
	cfg.defaults()
	if wake == nil {
		wake = func(uuid.UUID) {}
	}
	return &Runner{store: store, models: models, tools: tools, wake: wake, cfg: cfg, running: map[uuid.UUID]*stepRun{}}
}

// Causes that end a step's context.
var (
	errCanceled    = errors.New("the run was canceled")
	errLeaseLost   = errors.New("another delivery took the step over")
	errStepTimeout = errors.New("the step ran past its time limit")
	errHandBack    = errors.New("the delivery ended before the step")
	errShutdown    = errors.New("the instance is shutting down")
)

// cancelLocal stops runID's step if it runs on this instance.
func (r *Runner) cancelLocal(runID uuid.UUID) {
	r.mu.Lock()
	s := r.running[runID]
	r.mu.Unlock()
	if s != nil {
		s.cancel(errCanceled)
	}
}

// Interrupt gives back every step running on this instance (shutdown):
// each saves the events it has, releases its lease and returns an error
// wrapping context.Canceled, so the queue delivers the same attempt again
// at once, elsewhere; the attempt is not counted as a failure.
func (r *Runner) Interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.running {
		s.cancel(errShutdown)
	}
}

// CancelSignal is told that runID was asked to cancel on some instance
// (the store's notification); a step of it running here stops.
func (r *Runner) CancelSignal(runID uuid.UUID) { r.cancelLocal(runID) }

// Handle runs the step t names; it implements Handler.
func (r *Runner) Handle(ctx context.Context, t Task) error {
	if t.Step < 0 || t.Step >= len(Steps) || t.Attempt < 1 || t.RunID == uuid.Nil {
		r.cfg.Log.Error("agent: a task that names no step; dropped", "task", t)
		return nil
	}
	owner := uuid.New()
	now := r.cfg.Clock.Now()
	claim, err := r.store.ClaimStep(ctx, t, owner, r.cfg.Lease, monthOf(now))
	if err != nil {
		return fmt.Errorf("claim %s: %w", t.DedupKey(), err)
	}
	switch claim.State {
	case Stale, Canceled:
		if claim.State == Canceled {
			r.wake(t.RunID)
		}
		return nil
	case Busy:
		return &BusyError{RetryAfter: claim.RetryAfter}
	}
	r.wake(t.RunID)
	s := &stepRun{r: r, task: t, owner: owner, run: claim.Run}
	if len(claim.ToolRounds) > 0 {
		// An earlier attempt's tool calls are replayed, not made again.
		if err := json.Unmarshal(claim.ToolRounds, &s.rounds); err != nil {
			r.cfg.Log.Warn("agent: cannot read a step's saved tool rounds; running them again", "run_id", t.RunID, "err", err)
			s.rounds = nil
		}
		s.replayed = len(s.rounds)
	}
	end, handBack := s.execute(ctx, claim.MonthTokens)
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if handBack != nil {
		if err := r.retrySave(saveCtx, t, func(ctx context.Context) error { return r.store.ReleaseStep(ctx, t, owner) }); err != nil {
			r.cfg.Log.Warn("agent: cannot release a step", "task", t.DedupKey(), "err", err)
		}
		return handBack
	}
	if end == nil {
		// The lease was lost: the delivery that holds it now decides.
		return nil
	}
	if err := r.retrySave(saveCtx, t, func(ctx context.Context) error { return r.store.EndStep(ctx, *end) }); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil
		}
		// Nothing was saved: give the step back so the queue's next
		// delivery runs it again at once.
		if rerr := r.store.ReleaseStep(saveCtx, t, owner); rerr != nil {
			r.cfg.Log.Warn("agent: cannot release a step", "task", t.DedupKey(), "err", rerr)
		}
		return fmt.Errorf("save %s: %w", t.DedupKey(), err)
	}
	r.wake(t.RunID)
	if r.cfg.AfterSave != nil {
		r.cfg.AfterSave(t)
	}
	return nil
}

// saveTimeout bounds the writes after a step's model calls (its outcome,
// or the release of its lease), which go on after the delivery ended.
const saveTimeout = 10 * time.Second

// Backoff between attempts at a step's last write: from saveRetryFirst,
// doubling, at most saveRetryMax apart, within saveTimeout.
const (
	saveRetryFirst = 100 * time.Millisecond
	saveRetryMax   = time.Second
)

// retrySave runs save, a step's last write, again with backoff while ctx
// allows when it fails for any reason but a lost lease: a database that
// restarts while a step finishes must not throw away model calls that are
// done (running the step again would call the model twice). Each write is
// one transaction that checks the lease, so an attempt that committed
// before its answer was lost makes the next one answer ErrLeaseLost, never
// a second save. Waits are in real time: ctx's deadline is.
func (r *Runner) retrySave(ctx context.Context, t Task, save func(context.Context) error) error {
	backoff := saveRetryFirst
	for attempt := 1; ; attempt++ {
		err := save(ctx)
		if err == nil || errors.Is(err, ErrLeaseLost) {
			return err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Now().Add(backoff).After(deadline) {
			return err
		}
		r.cfg.Log.Warn("agent: cannot save a step's end; retrying", "task", t.DedupKey(), "attempt", attempt, "retry_in", backoff.String(), "err", err)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return err
		}
		backoff = min(2*backoff, saveRetryMax)
	}
}

// monthOf is the quota period holding t (the first of its month, UTC).
func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// stepRun is one attempt of one step, on this instance.
type stepRun struct {
	r     *Runner
	task  Task
	owner uuid.UUID
	run   Run

	cancel context.CancelCauseFunc // ends the attempt, with its cause

	mu          sync.Mutex
	pending     []Event // not yet saved
	text        []byte  // the step's text so far
	rounds      []chat.ToolRound
	replayed    int // rounds saved by earlier attempts
	roundsDirty bool
	usage       chat.Usage
}

// execute runs the step and returns its outcome, nil when the lease was
// lost, or an error (wrapping context.Canceled) when the step is to be
// given back: the delivery ended before the step (the queue is stopping)
// or the instance is shutting down.
func (s *stepRun) execute(parent context.Context, monthTokens int64) (*StepEnd, error) {
	r := s.r
	if s.run.QuotaTokens > 0 && monthTokens >= s.run.QuotaTokens {
		// Waiting will not help before the month ends: the run fails.
		return s.failed(fmt.Sprintf("the monthly quota of %d tokens is used up", s.run.QuotaTokens), false), nil
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	defer cancel(nil)
	s.cancel = cancel
	// The delivery ending (River stopping, QStash's request cut) ends the
	// attempt too.
	stopParent := context.AfterFunc(parent, func() { cancel(errHandBack) })
	defer stopParent()
	timer := time.AfterFunc(r.cfg.StepTimeout, func() { cancel(errStepTimeout) })
	defer timer.Stop()
	r.mu.Lock()
	r.running[s.run.ID] = s
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.running[s.run.ID] == s {
			delete(r.running, s.run.ID)
		}
		r.mu.Unlock()
	}()

	stop, flushed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(flushed)
		s.flushLoop(stop, cancel)
	}()
	err := s.work(ctx)
	close(stop)
	<-flushed
	cause := context.Cause(ctx)
	if errors.Is(cause, errLeaseLost) {
		return nil, nil
	}
	// What the step wrote reaches watchers before its end.
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(parent), saveTimeout)
	defer cancelFlush()
	if ferr := s.flush(flushCtx); errors.Is(ferr, ErrLeaseLost) {
		return nil, nil
	}
	switch {
	case err == nil:
		return s.succeeded(), nil
	case errors.Is(cause, errCanceled):
		return s.canceled(), nil
	case errors.Is(cause, errHandBack), errors.Is(cause, errShutdown):
		return nil, fmt.Errorf("agent: %s given back: %w (%w)", s.task.DedupKey(), context.Canceled, cause)
	case errors.Is(cause, errStepTimeout):
		return s.failed(fmt.Sprintf("the %s step ran past its limit of %s", s.name(), r.cfg.StepTimeout), true), nil
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return s.failed(ae.Message, transient(ae.Code)), nil
	}
	r.cfg.Log.Error("agent: a step failed", "run_id", s.run.ID, "step", s.name(), "err", err)
	return s.failed("the step failed unexpectedly", true), nil
}

// transient reports whether a failure of that code may pass on its own.
func transient(code apperr.Code) bool {
	switch code {
	case apperr.Unavailable, apperr.DeadlineExceeded, apperr.Aborted, apperr.ResourceExhausted, apperr.Canceled:
		return true
	}
	return false
}

func (s *stepRun) name() StepName { return Steps[s.task.Step] }

// base fills what every outcome has.
func (s *stepRun) base(outcome Outcome) *StepEnd {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rounds []byte
	if len(s.rounds) > 0 {
		rounds, _ = json.Marshal(s.rounds) // plain structs always marshal
	}
	return &StepEnd{
		Task: s.task, Owner: s.owner, UserID: s.run.UserID, Outcome: outcome,
		Output: string(s.text), ToolRounds: rounds, Tokens: s.usage.PromptTokens + s.usage.CompletionTokens,
		Month: monthOf(s.r.cfg.Clock.Now()), RunStep: s.task.Step, ConversationID: s.run.ConversationID, Model: s.run.Model,
		PromptTokens: s.usage.PromptTokens, CompletionTokens: s.usage.CompletionTokens,
	}
}

func (s *stepRun) succeeded() *StepEnd {
	e := s.base(Succeeded)
	e.Events = []Event{{Step: s.task.Step, Kind: EventStepFinished, Text: e.Output, Tokens: e.Tokens}}
	if s.task.Step == len(Steps)-1 {
		e.RunStatus, e.Summary = StatusSucceeded, e.Output
		e.PostSummary = s.run.ConversationID != uuid.Nil
		e.Events = append(e.Events, Event{Step: -1, Kind: EventRunFinished})
		return e
	}
	next := Task{RunID: s.task.RunID, Step: s.task.Step + 1, Attempt: 1}
	e.RunStatus, e.RunStep, e.Next, e.NotBefore = StatusRunning, next.Step, &next, s.r.cfg.Clock.Now()
	return e
}

func (s *stepRun) canceled() *StepEnd {
	e := s.base(Cancel)
	e.RunStatus = StatusCanceled
	e.Events = []Event{{Step: -1, Kind: EventRunCanceled}}
	return e
}

// failed ends an attempt that failed: the next attempt is queued when the
// failure may pass and attempts remain, else the run fails.
func (s *stepRun) failed(reason string, retry bool) *StepEnd {
	if retry && s.task.Attempt < s.r.cfg.MaxAttempts {
		e := s.base(Retrying)
		e.Error = reason
		wait := min(s.r.cfg.RetryBackoff<<(s.task.Attempt-1), time.Minute)
		next := Task{RunID: s.task.RunID, Step: s.task.Step, Attempt: s.task.Attempt + 1}
		e.RunStatus, e.Next, e.NotBefore = StatusRunning, &next, s.r.cfg.Clock.Now().Add(wait)
		e.Events = []Event{{Step: s.task.Step, Kind: EventStepRetrying, Attempt: s.task.Attempt, Error: reason, NextAttempt: e.NotBefore}}
		return e
	}
	e := s.base(Failed)
	e.Error = reason
	if retry && s.task.Attempt > 1 {
		reason = fmt.Sprintf("%s (after %d attempts)", reason, s.task.Attempt)
	}
	e.RunStatus, e.RunError = StatusFailed, fmt.Sprintf("the %s step failed: %s", s.name(), reason)
	e.Events = []Event{{Step: -1, Kind: EventRunFailed, Error: e.RunError}}
	return e
}

// emit queues an event for the next flush; deltas in a row coalesce.
func (s *stepRun) emit(ev Event) {
	ev.Step = s.task.Step
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Kind == EventDelta {
		s.text = append(s.text, ev.Text...)
		if n := len(s.pending); n > 0 && s.pending[n-1].Kind == EventDelta {
			s.pending[n-1].Text += ev.Text
			return
		}
	}
	s.pending = append(s.pending, ev)
}

// flushLoop saves the step's events every FlushInterval, and renews the
// lease (with no events, a heartbeat) often enough that it never lapses
// while the step runs, until stop is closed. It ends the attempt when the
// run is to cancel or the lease is lost. A write in flight when stop
// closes finishes: cutting it could leave it saved on the server but
// unknown here, and saved again.
func (s *stepRun) flushLoop(stop <-chan struct{}, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(s.r.cfg.FlushInterval)
	defer tick.Stop()
	heartbeat := s.r.cfg.Lease / 6
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		idle := len(s.pending) == 0 && !s.roundsDirty
		s.mu.Unlock()
		if idle && time.Since(last) < heartbeat {
			continue
		}
		last = time.Now()
		ctx, done := context.WithTimeout(context.Background(), saveTimeout)
		err := s.flush(ctx)
		done()
		switch {
		case errors.Is(err, ErrLeaseLost):
			cancel(errLeaseLost)
			return
		case errors.Is(err, errCancelAsked):
			cancel(errCanceled)
			return
		case err != nil:
			s.r.cfg.Log.Warn("agent: cannot save a step's events; retrying", "run_id", s.run.ID, "err", err)
		}
	}
}

var errCancelAsked = errors.New("cancel asked")

// flush saves the pending events, and the tool rounds when they changed;
// it returns errCancelAsked when the run was asked to cancel.
func (s *stepRun) flush(ctx context.Context) error {
	s.mu.Lock()
	evs := s.pending
	s.pending = nil
	var rounds []byte
	if s.roundsDirty {
		rounds, _ = json.Marshal(s.rounds) // plain structs always marshal
		s.roundsDirty = false
	}
	s.mu.Unlock()
	cancelAsked, err := s.r.store.AppendEvents(ctx, s.task, s.owner, s.r.cfg.Lease, evs, rounds)
	if err != nil {
		if !errors.Is(err, ErrLeaseLost) {
			// Keep them for the next try, in order.
			s.mu.Lock()
			s.pending = append(evs, s.pending...)
			s.roundsDirty = s.roundsDirty || rounds != nil
			s.mu.Unlock()
		}
		return err
	}
	if len(evs) > 0 {
		s.r.wake(s.run.ID)
	}
	if cancelAsked {
		return errCancelAsked
	}
	return nil
}

// SweepConfig tunes Sweep.
type SweepConfig struct {
	// Every is how often the sweep looks (default 30 s).
	Every time.Duration
	// PendingFor is how long a queued step may wait with no delivery
	// before it is queued again (default 3 minutes: longer than any retry
	// backoff plus the queues' own delays).
	PendingFor time.Duration
	// LeaseLapsedFor is how long a running step's lease may have lapsed
	// (its instance died) before the step is queued again (default 30 s;
	// River would redeliver it only after its rescue delay, minutes).
	LeaseLapsedFor time.Duration
}

// Sweep queues again, until ctx ends, the steps of runs in progress that
// nothing works on: a task the queue lost or gave up on (River discards a
// job after its attempts, QStash sends a message to its dead letter
// queue), or a step whose instance died. A requeue is a new task (its
// Requeue count), which the step handler's claim makes safe to deliver
// next to an old one.
func (r *Runner) Sweep(ctx context.Context, cfg SweepConfig) {
	if cfg.Every <= 0 {
		cfg.Every = 30 * time.Second
	}
	if cfg.PendingFor <= 0 {
		cfg.PendingFor = 3 * time.Minute
	}
	if cfg.LeaseLapsedFor <= 0 {
		cfg.LeaseLapsedFor = 30 * time.Second
	}
	tick := r.cfg.Clock.NewTicker(cfg.Every)
	defer tick.Stop()
	for {
		now := r.cfg.Clock.Now()
		tasks, err := r.store.Stranded(ctx, now.Add(-cfg.PendingFor), now.Add(-cfg.LeaseLapsedFor), 100)
		if err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("agent: cannot look for stranded runs", "err", err)
		}
		for _, t := range tasks {
			if err := r.store.Requeue(ctx, t); err != nil {
				if ctx.Err() == nil {
					r.cfg.Log.Warn("agent: cannot queue a stranded step again", "task", t.DedupKey(), "err", err)
				}
				continue
			}
			r.cfg.Log.Info("agent: queued a stranded step again", "run_id", t.RunID, "step", Steps[t.Step], "attempt", t.Attempt)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		}
	}
}

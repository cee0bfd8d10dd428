package agent

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Store keeps runs, steps and events; internal/store implements it on
// PostgreSQL. Every method that takes a user id filters by it, answering
// apperr NotFound for another user's run. The methods that queue a task
// (CreateRun, EndStep) hand it to the store's task queue inside the
// transaction that saves the state, so a saved step always has its next
// task, and a task always finds its state.
type Store interface {
	// CreateRun saves a run with its five steps and queues first, unless
	// the user already has maxActive runs in progress (ErrTooManyRuns), has
	// used r.QuotaTokens this month (ErrQuotaExceeded), or the conversation
	// is not theirs (apperr NotFound). A repeated request id returns the
	// first run and created false.
	CreateRun(ctx context.Context, r NewRun, maxActive int, first Task) (run Run, created bool, err error)
	// GetRun returns a run with its steps.
	GetRun(ctx context.Context, userID, runID uuid.UUID) (Run, error)
	// ListRuns returns up to limit runs older than after (nil: from the
	// newest), newest first, with their steps but not their output.
	ListRuns(ctx context.Context, userID uuid.UUID, after *Cursor, limit int) ([]Run, error)
	// CancelRun asks a run to cancel and wakes the delivery running it; a
	// run none runs right now is canceled at once. It returns the run.
	CancelRun(ctx context.Context, userID, runID uuid.UUID) (Run, error)

	// ClaimStep takes the lease on t's step for owner and appends the
	// step's started event. Claim.State says what happened.
	ClaimStep(ctx context.Context, t Task, owner uuid.UUID, lease time.Duration, month time.Time) (Claim, error)
	// AppendEvents appends the running step's events while owner holds
	// its lease, and renews the lease; evs may be empty (a heartbeat).
	// toolRounds, when not nil, replaces the step's saved tool rounds
	// (JSON). It reports whether the run was asked to cancel, or
	// ErrLeaseLost.
	AppendEvents(ctx context.Context, t Task, owner uuid.UUID, lease time.Duration, evs []Event, toolRounds []byte) (cancel bool, err error)
	// EndStep saves a step's outcome, the run's new state, its events, the
	// tokens used and the next task, in one transaction, while e.Owner
	// holds the lease (else ErrLeaseLost and nothing is saved).
	EndStep(ctx context.Context, e StepEnd) error
	// ReleaseStep gives up owner's lease without saving anything.
	ReleaseStep(ctx context.Context, t Task, owner uuid.UUID) error
	// Stranded lists up to limit tasks of runs in progress that nothing
	// works on: a step pending since before pendingBefore, or running under
	// a lease that lapsed before leaseBefore. Requeues is each run's count.
	Stranded(ctx context.Context, pendingBefore, leaseBefore time.Time, limit int) ([]Task, error)
	// Requeue queues t again with t.Requeue one more than the run's count,
	// unless another sweep did so first (then it does nothing).
	Requeue(ctx context.Context, t Task) error
	// Events returns up to limit events of the user's run with a seq
	// after afterSeq, in order (none for another user's run).
	Events(ctx context.Context, userID, runID uuid.UUID, afterSeq int64, limit int) ([]Event, error)
}

// Errors a Store returns.
var (
	ErrTooManyRuns   = errors.New("agent: too many runs in progress")
	ErrLeaseLost     = errors.New("agent: the step's lease is held by another delivery")
	ErrQuotaExceeded = errors.New("agent: the monthly token quota is used up")
)

// ClaimState says what ClaimStep found.
type ClaimState int

// The outcomes of a claim.
const (
	// Claimed: the caller holds the lease and runs the step.
	Claimed ClaimState = iota
	// Stale: the step has ended, or the task's attempt is not the step's
	// current one; nothing to do.
	Stale
	// Busy: another delivery holds a live lease until RetryAfter.
	Busy
	// Canceled: the run was asked to cancel; the store ended it.
	Canceled
)

// Claim is what ClaimStep found.
type Claim struct {
	State      ClaimState
	Run        Run           // with its steps, when Claimed
	Seq        int64         // the started event's seq, when Claimed
	RetryAfter time.Duration // when Busy
	// ToolRounds are the step's tool rounds saved by earlier attempts
	// (JSON, or nil), replayed instead of run again.
	ToolRounds []byte
	// MonthTokens is what the user has used and reserved this month, when
	// Claimed.
	MonthTokens int64
}

// Outcome is how a step ended.
type Outcome string

// The outcomes of a step.
const (
	Succeeded Outcome = "succeeded" // output saved; next step queued or run finished
	Retrying  Outcome = "retrying"  // failed transiently; the next attempt queued
	Failed    Outcome = "failed"    // failed for good; the run failed
	Cancel    Outcome = "canceled"  // the run was canceled; partial output kept
)

// StepEnd is a step's outcome as EndStep saves it.
type StepEnd struct {
	Task   Task
	Owner  uuid.UUID
	UserID uuid.UUID
	// Outcome decides the step's status; the run's follows from RunStatus.
	Outcome    Outcome
	Output     string
	ToolRounds []byte // JSON, or nil
	Error      string // what failed, in words a user can read
	Tokens     int64
	Month      time.Time // the quota period the tokens count against
	// Next is the task to queue (the next step, or this step's next
	// attempt) at NotBefore; nil when the run ends.
	Next      *Task
	NotBefore time.Time
	// The run's new state.
	RunStatus Status
	RunStep   int
	Summary   string
	RunError  string
	// PostSummary posts Summary to the run's conversation (which must be
	// the user's) as an assistant message of Model, with Usage's tokens.
	PostSummary      bool
	ConversationID   uuid.UUID
	Model            string
	PromptTokens     int64
	CompletionTokens int64
	// Events are appended after the step's own, in order.
	Events []Event
}

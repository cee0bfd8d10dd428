package agent

import (
	"time"

	"github.com/google/uuid"
)

// Status says where a run is.
type Status string

// The statuses of a run.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Ended reports whether a run in status s will not change any more.
func (s Status) Ended() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// StepStatus says where a step is.
type StepStatus string

// The statuses of a step.
const (
	StepPending   StepStatus = "pending"
	StepRunning   StepStatus = "running"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
	StepCanceled  StepStatus = "canceled"
)

// StepName names a step.
type StepName string

// The steps of every run, in the order they run.
const (
	StepPlan      StepName = "plan"
	StepResearch  StepName = "research"
	StepAnalyze   StepName = "analyze"
	StepExecute   StepName = "execute"
	StepSummarize StepName = "summarize"
)

// Steps lists the steps in order: a step's index in a run is its index
// here.
var Steps = []StepName{StepPlan, StepResearch, StepAnalyze, StepExecute, StepSummarize}

// Run is one agent run.
type Run struct {
	ID             uuid.UUID
	UserID         uuid.UUID
	ConversationID uuid.UUID // uuid.Nil when none, or once it is deleted
	Goal           string
	Model          string
	Tools          []string
	Status         Status
	// Step is the index of the step running, or queued next.
	Step             int
	Steps            []Step
	Summary          string
	Error            string
	QuotaTokens      int64 // the plan's monthly quota when the run started; 0: none
	TotalTokens      int64
	CancelRequested  bool
	SummaryMessageID uuid.UUID
	LastSeq          int64
	CreateTime       time.Time
	UpdateTime       time.Time
	EndTime          time.Time // zero while the run is in progress
}

// Step is one step of a run.
type Step struct {
	Index       int
	Name        StepName
	Status      StepStatus
	Attempt     int // the attempt queued or running, from 1; 0 until queued
	Output      string
	Error       string
	TotalTokens int64
	StartTime   time.Time // zero until it starts
	EndTime     time.Time // zero until it ends
}

// NewRun is a run to save.
type NewRun struct {
	ID             uuid.UUID
	UserID         uuid.UUID
	ConversationID uuid.UUID // uuid.Nil for none
	Goal           string
	Model          string
	Tools          []string
	QuotaTokens    int64     // 0: no quota
	Month          time.Time // the quota period QuotaTokens applies to
	RequestID      string
}

// EventKind says what an event is.
type EventKind string

// The kinds of events.
const (
	EventStepStarted  EventKind = "step_started"
	EventDelta        EventKind = "delta"
	EventToolCall     EventKind = "tool_call"
	EventToolResult   EventKind = "tool_result"
	EventStepFinished EventKind = "step_finished"
	EventStepRetrying EventKind = "step_retrying"
	EventRunFinished  EventKind = "run_finished"
	EventRunFailed    EventKind = "run_failed"
	EventRunCanceled  EventKind = "run_canceled"
)

// Terminal reports whether an event of kind k is a run's last.
func (k EventKind) Terminal() bool {
	return k == EventRunFinished || k == EventRunFailed || k == EventRunCanceled
}

// Event is one thing that happened in a run. Seq, Step, Kind and Time are
// the envelope; the other fields are the kind's data, saved as JSON.
type Event struct {
	Seq  int64     `json:"-"`
	Step int       `json:"-"` // -1 for run events
	Kind EventKind `json:"-"`
	Time time.Time `json:"-"`

	Attempt         int       `json:"attempt,omitempty"`
	Text            string    `json:"text,omitempty"` // delta text, or a finished step's output
	CallID          string    `json:"call_id,omitempty"`
	Tool            string    `json:"tool,omitempty"`
	Arguments       string    `json:"arguments,omitempty"`
	Result          string    `json:"result,omitempty"`
	IsError         bool      `json:"is_error,omitempty"`
	ArtifactID      uuid.UUID `json:"artifact_id,omitzero"`
	ArtifactVersion int       `json:"artifact_version,omitempty"`
	Error           string    `json:"error,omitempty"`
	Tokens          int64     `json:"tokens,omitempty"`
	NextAttempt     time.Time `json:"next_attempt,omitzero"`
}

// Cursor is a keyset position in a list of runs: the create time and id
// of the last run of a page.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

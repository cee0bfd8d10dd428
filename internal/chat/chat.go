// Package chat holds Parley's conversation domain: the types, the rules a
// request must follow and the services that apply them.
//
// It knows nothing of protobuf, SQL, Redis or any model provider's SDK. It
// declares the small interfaces it needs (Store and GenerationStore in
// store.go, Provider and ModelStream in model.go, EventLog in event.go)
// and the adapter packages implement them: internal/store (Postgres),
// internal/llm (models), internal/broker (Redis or memory). A test in
// internal/archtest keeps it that way.
//
// Service handles conversations; Generator runs the life of an answer, one
// stage a file: prepare.go, start.go, stream.go, checkpoint.go, mirror.go,
// finish.go, follow.go, stop.go, sweep.go.
package chat

import (
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/attachment"
)

// Limits on what a client may send.
const (
	MaxTitleRunes        = 200
	MaxSystemPromptBytes = 32 << 10
	MaxModelBytes        = 100
	MaxRequestIDBytes    = 100
	MaxContentBytes      = 100 << 10
	DefaultPageSize      = 20
	MaxPageSize          = 100
)

// Conversation is one chat thread owned by a single user.
type Conversation struct {
	ID           uuid.UUID
	UserID       uuid.UUID
	Title        string
	SystemPrompt string
	Model        string
	CreateTime   time.Time
	UpdateTime   time.Time
}

// NewConversation holds what a client may set when it creates a conversation.
type NewConversation struct {
	Title        string
	SystemPrompt string
	Model        string
	// RequestID makes the create idempotent when non-empty.
	RequestID string
}

// ConversationPatch changes the fields that are non-nil.
type ConversationPatch struct {
	Title        *string
	SystemPrompt *string
	Model        *string
}

// Role says who wrote a message.
type Role string

// The roles of messages.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleSystem    Role = "system"
	// RoleTool is a tool's result in a prompt; saved messages never have
	// it (an answer keeps its tool calls in ToolRounds).
	RoleTool Role = "tool"
)

// Status is where a message is in its life.
type Status string

// The statuses of messages.
const (
	StatusCompleted   Status = "completed"
	StatusStreaming   Status = "streaming"
	StatusStopped     Status = "stopped"
	StatusFailed      Status = "failed"
	StatusInterrupted Status = "interrupted"
)

// Usage counts the tokens a provider billed for one answer.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
}

// Message is one turn of a conversation.
type Message struct {
	ID             uuid.UUID
	ConversationID uuid.UUID
	ParentID       uuid.UUID // uuid.Nil for the first message
	Role           Role
	Content        string
	Status         Status
	Model          string
	Usage          Usage
	FinishReason   string
	GenerationID   uuid.UUID // uuid.Nil unless an assistant message
	// ClientMessageID is the client's idempotency key the message was
	// saved under, if any; filled by LoadContext.
	ClientMessageID string
	CreateTime      time.Time
	UpdateTime      time.Time
	// SiblingIDs lists the messages sharing this one's parent (itself
	// included), oldest first; filled when listing a branch.
	SiblingIDs []uuid.UUID
	// ToolRounds are the turns of an answer in which the model called
	// tools, in order; Content holds all the text, theirs included.
	ToolRounds []ToolRound
	// Attachments are a user message's files, without their content.
	Attachments []attachment.Attachment
	// Cached is true for an answer relayed from the response cache
	// instead of written by the model.
	Cached bool
	// Rating is the owner's rating of an answer, nil when unrated; filled
	// when listing a branch.
	Rating *Rating
}

// ToolRound is one turn of an answer in which the model called tools: the
// text it wrote before the calls, and the calls with their results.
type ToolRound struct {
	Text  string    `json:"text,omitempty"`
	Calls []ToolUse `json:"calls"`
}

// ToolUse is one tool call of an answer and what it returned.
type ToolUse struct {
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Arguments string       `json:"arguments"`
	Result    string       `json:"result"`
	IsError   bool         `json:"is_error,omitempty"`
	Artifact  *ArtifactRef `json:"artifact,omitempty"`
}

// Ended reports whether the message will not change any more: every
// status but streaming is final.
func (m Message) Ended() bool { return m.Status != StatusStreaming }

// Cursor is a keyset position: the sort time and id of the last row of a page.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// Page is a page request after validation.
type Page struct {
	Size  int
	After *Cursor // nil for the first page
}

// TokenUsage is a user's token account for one month.
type TokenUsage struct {
	Month    time.Time // first day, UTC
	Used     int64     // settled usage of finished answers
	Reserved int64     // estimates held by answers still streaming
	Active   int       // answers streaming now
}

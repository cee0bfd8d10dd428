package chat

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"
)

// ToolSpec describes a tool the model may call during an answer.
type ToolSpec struct {
	Name, Description string
	Parameters        json.RawMessage // JSON Schema of the arguments object
	StreamField       string          // a string argument streamed to clients as it is written ("content"), or ""
}

// ToolCall is one call the model made. Arguments is the JSON object the
// model wrote.
type ToolCall struct{ ID, Name, Arguments string }

// ToolContext says on whose behalf, and from which answer, a tool runs.
type ToolContext struct {
	UserID, ConversationID, MessageID uuid.UUID
	// RequestID, when set, makes a tool that creates something do it once:
	// a second call with the same RequestID returns what the first made.
	RequestID string
}

// ArtifactRef names the version of an artifact a tool call wrote.
type ArtifactRef struct {
	ID      uuid.UUID
	Version int
	Title   string
	Kind    string
}

// ToolResult is what a tool call produced.
type ToolResult struct {
	Content  string       // what the model is told (JSON or text), at most a few KiB
	IsError  bool         // the call was wrong; Content says how to fix it
	Artifact *ArtifactRef // the artifact the call wrote, if any
}

// Toolbox runs the tools answers may call; internal/artifact's Tools is
// one.
type Toolbox interface {
	// Specs lists the tools offered to the model.
	Specs() []ToolSpec
	// Call runs one call. It never fails the answer: a call the tool
	// cannot carry out gives a result with IsError, which the model reads
	// and may correct.
	Call(ctx context.Context, tc ToolContext, call ToolCall) ToolResult
}

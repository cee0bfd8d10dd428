package chat

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"
)

type ToolSpec struct {
	Name, Description string
	Parameters        json.RawMessage // JSON Schema of the arguments object
	StreamField       string          // a string argument streamed to clients as it is written ("content"), or ""
}
type ToolCall struct{ ID, Name, Arguments string } // Arguments: the JSON object the model wrote
type ToolContext struct{ UserID, ConversationID, MessageID uuid.UUID }
type ArtifactRef struct {
	ID      uuid.UUID
	Version int
	Title   string
	Kind    string
}
type ToolResult struct {
	Content  string       // what the model is told (JSON or text), at most a few KiB
	IsError  bool         // the call was wrong; Content says how to fix it
	Artifact *ArtifactRef // the artifact the call wrote, if any
}
type Toolbox interface {
	Specs() []ToolSpec
	Call(ctx context.Context, tc ToolContext, call ToolCall) ToolResult
}

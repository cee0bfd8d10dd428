package chattest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
)

// Tools is an in-memory chat.Toolbox with the two artifact tools, so the
// tool loop can be tested without a database: create_artifact makes a
// document, update_artifact writes its next version. It is safe for
// concurrent use.
type Tools struct {
	mu        sync.Mutex
	artifacts map[uuid.UUID]*chat.ArtifactRef
	calls     []chat.ToolCall
}

var _ chat.Toolbox = (*Tools)(nil)

// NewTools returns a Toolbox with no artifacts.
func NewTools() *Tools { return &Tools{artifacts: map[uuid.UUID]*chat.ArtifactRef{}} }

// Calls returns the calls run so far.
func (t *Tools) Calls() []chat.ToolCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]chat.ToolCall(nil), t.calls...)
}

// Specs implements chat.Toolbox.
func (t *Tools) Specs() []chat.ToolSpec {
	return []chat.ToolSpec{
		{Name: "create_artifact", Description: "Create a document.", StreamField: "content",
			Parameters: json.RawMessage(`{"type":"object","properties":{"title":{"type":"string"},"content":{"type":"string"}},"required":["title","content"]}`)},
		{Name: "update_artifact", Description: "Write a new version of a document.", StreamField: "content",
			Parameters: json.RawMessage(`{"type":"object","properties":{"artifact_id":{"type":"string"},"content":{"type":"string"}},"required":["artifact_id","content"]}`)},
	}
}

// Call implements chat.Toolbox.
func (t *Tools) Call(_ context.Context, _ chat.ToolContext, call chat.ToolCall) chat.ToolResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, call)
	var args struct {
		ArtifactID string `json:"artifact_id"`
		Title      string `json:"title"`
		Content    string `json:"content"`
	}
	if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
		return chat.ToolResult{IsError: true, Content: "arguments: not a JSON object: " + err.Error()}
	}
	var ref *chat.ArtifactRef
	switch call.Name {
	case "create_artifact":
		if args.Title == "" {
			return chat.ToolResult{IsError: true, Content: "title: required"}
		}
		ref = &chat.ArtifactRef{ID: uuid.New(), Version: 1, Title: args.Title, Kind: "text"}
		t.artifacts[ref.ID] = ref
	case "update_artifact":
		id, err := uuid.Parse(args.ArtifactID)
		if err != nil || t.artifacts[id] == nil {
			return chat.ToolResult{IsError: true, Content: "artifact_id: no such artifact"}
		}
		t.artifacts[id].Version++
		ref = t.artifacts[id]
	}
	copied := *ref
	return chat.ToolResult{
		Content:  fmt.Sprintf(`{"artifact_id":%q,"version":%d,"title":%q}`, ref.ID, ref.Version, ref.Title),
		Artifact: &copied,
	}
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/search"
)

// Toolbox is the tools agent steps call: search over the user's messages
// and artifacts, reading an artifact (through the search and artifact
// rules), and the artifact tools answers use to write documents.
type Toolbox struct {
	search    *search.Service
	artifacts *artifact.Service
	writer    *artifact.Tools
	log       *slog.Logger
}

// NewToolbox returns the agent's tools on those services.
func NewToolbox(searcher *search.Service, artifacts *artifact.Service, log *slog.Logger) *Toolbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Toolbox{search: searcher, artifacts: artifacts, writer: artifact.NewTools(artifacts, log), log: log}
}

var searchSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "query": {"type": "string", "description": "Words to look for, as typed in a search box.", "maxLength": 256},
    "kind": {"type": "string", "enum": ["message", "artifact"], "description": "Only messages or only artifacts; omit for both."}
  },
  "required": ["query"],
  "additionalProperties": false
}`)

var readSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "artifact_id": {"type": "string", "description": "The id of the artifact, as search or create_artifact returned it."},
    "version": {"type": "integer", "description": "A version to read; omit for the latest.", "minimum": 1}
  },
  "required": ["artifact_id"],
  "additionalProperties": false
}`)

// Specs implements Tools.
func (t *Toolbox) Specs(names []string) []chat.ToolSpec {
	all := append([]chat.ToolSpec{
		{Name: ToolSearch, Description: "Search the user's earlier messages and their artifacts (documents). Returns up to 5 results with snippets, best first.", Parameters: searchSchema},
		{Name: ToolReadArtifact, Description: "Read the whole content of one of the user's artifacts.", Parameters: readSchema},
	}, t.writer.Specs()...)
	var out []chat.ToolSpec
	for _, s := range all {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// searchHit is what the model is told of a search result.
type searchHit struct {
	Kind    string `json:"kind"`
	ID      string `json:"id"`
	Title   string `json:"title"`
	Snippet string `json:"snippet"`
}

// Call implements Tools.
func (t *Toolbox) Call(ctx context.Context, tc ToolCall, call chat.ToolCall) chat.ToolResult {
	userID := tc.UserID
	switch call.Name {
	case ToolSearch:
		var args struct {
			Query string `json:"query"`
			Kind  string `json:"kind"`
		}
		if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
			return toolError(`the arguments are not a JSON object like {"query": "words"}`)
		}
		req := search.Request{Query: args.Query, PageSize: 5}
		if args.Kind != "" {
			req.Kinds = []search.Kind{search.Kind(args.Kind)}
		}
		results, _, err := t.search.Search(ctx, userID, req)
		if err != nil {
			return t.failed(ctx, call, err)
		}
		hits := make([]searchHit, 0, len(results))
		for _, r := range results {
			hits = append(hits, searchHit{Kind: string(r.Kind), ID: r.ID.String(), Title: r.Title, Snippet: plainSnippet(r.Snippet)})
		}
		raw, _ := json.Marshal(map[string]any{"results": hits}) // plain values always marshal
		return chat.ToolResult{Content: string(raw)}
	case ToolReadArtifact:
		var args struct {
			ArtifactID string `json:"artifact_id"`
			Version    int    `json:"version"`
		}
		if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
			return toolError(`the arguments are not a JSON object like {"artifact_id": "..."}`)
		}
		id, err := uuid.Parse(args.ArtifactID)
		if err != nil {
			return toolError(`"artifact_id" is not an artifact id; use one that search or create_artifact returned`)
		}
		a, v, err := t.artifacts.Get(ctx, userID, id, args.Version)
		if err != nil {
			return t.failed(ctx, call, err)
		}
		raw, _ := json.Marshal(map[string]any{"artifact_id": a.ID.String(), "title": v.Title, "kind": a.Kind, "version": v.Number, "content": v.Content})
		return chat.ToolResult{Content: string(raw)}
	case ToolCreateArtifact, ToolUpdateArtifact:
		return t.writer.Call(ctx, chat.ToolContext{UserID: userID, ConversationID: tc.ConversationID, RequestID: tc.RequestKey}, call)
	}
	return toolError("there is no tool named " + call.Name)
}

// failed turns a service error into what the model is told: the rule it
// broke, or that the tool is unavailable; internal details only to the log.
func (t *Toolbox) failed(ctx context.Context, call chat.ToolCall, err error) chat.ToolResult {
	var ae *apperr.Error
	if errors.As(err, &ae) && ae.Code != apperr.Internal && ae.Code != apperr.Unavailable {
		return toolError(ae.Message)
	}
	t.log.ErrorContext(ctx, "agent tool failed", "tool", call.Name, "err", err)
	return toolError("the tool is unavailable right now; go on without it")
}

func toolError(msg string) chat.ToolResult { return chat.ToolResult{IsError: true, Content: msg} }

// plainSnippet drops the <mark> tags of a search snippet (the model reads
// text) and unescapes its HTML entities.
func plainSnippet(s string) string {
	s = strings.NewReplacer("<mark>", "", "</mark>", "").Replace(s)
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#39;", "'", "&amp;", "&").Replace(s)
}

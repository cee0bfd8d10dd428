package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
)

// The tools the model may call during an answer.
const (
	ToolCreate = "create_artifact"
	ToolUpdate = "update_artifact"
)

// maxToolResultBytes bounds what a tool call tells the model.
const maxToolResultBytes = 2 << 10

// Tools offers the artifact tools to the model during a chat answer: it is
// the chat.Toolbox the generator calls. A call is never a Go error: bad
// arguments, an unknown or foreign artifact, or a failed save all come
// back as a ToolResult the model can read and act on. Versions it writes
// are the assistant's, linked to the answer that wrote them.
type Tools struct {
	svc *Service
	log *slog.Logger
}

var _ chat.Toolbox = (*Tools)(nil)

// NewTools returns the artifact tools on svc; log (nil: discarded) gets
// the errors that are the server's, not the model's.
func NewTools(svc *Service, log *slog.Logger) *Tools {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tools{svc: svc, log: log}
}

// createSchema and updateSchema are compacted on first use (see
// compactJSON), not at every start.
var createSchema = compactJSON(`{
  "type": "object",
  "properties": {
    "title": {"type": "string", "description": "A short title for the document, at most 200 characters.", "maxLength": 200},
    "kind": {"type": "string", "enum": ["text", "code", "sheet"], "description": "text for prose (Markdown), code for source code, sheet for a table as CSV."},
    "language": {"type": "string", "description": "For kind code only: the programming language, such as go or python."},
    "content": {"type": "string", "description": "The whole document. For a sheet: CSV, a header row first, every row with as many fields."}
  },
  "required": ["title", "kind", "content"],
  "additionalProperties": false
}`)

var updateSchema = compactJSON(`{
  "type": "object",
  "properties": {
    "artifact_id": {"type": "string", "description": "The artifact_id that create_artifact returned."},
    "content": {"type": "string", "description": "The whole new document, replacing the old one."},
    "title": {"type": "string", "description": "A new title, if it should change.", "maxLength": 200}
  },
  "required": ["artifact_id", "content"],
  "additionalProperties": false
}`)

// Specs implements chat.Toolbox.
func (t *Tools) Specs() []chat.ToolSpec {
	return []chat.ToolSpec{
		{
			Name: ToolCreate,
			Description: "Create a document the user can see beside the chat, edit and keep: prose, code or a spreadsheet. " +
				"Use it for anything longer than a few paragraphs, any program, or a table, instead of writing it in the answer.",
			Parameters:  createSchema(),
			StreamField: "content",
		},
		{
			Name:        ToolUpdate,
			Description: "Replace the content (and optionally the title) of a document created earlier in this conversation with create_artifact.",
			Parameters:  updateSchema(),
			StreamField: "content",
		},
	}
}

type createArgs struct {
	Title    *string `json:"title"`
	Kind     *string `json:"kind"`
	Language string  `json:"language"`
	Content  *string `json:"content"`
}

type updateArgs struct {
	ArtifactID *string `json:"artifact_id"`
	Content    *string `json:"content"`
	Title      *string `json:"title"`
}

// saved is what the model is told about a version it wrote.
type saved struct {
	ArtifactID string `json:"artifact_id"`
	Version    int    `json:"version"`
	Title      string `json:"title"`
	Kind       Kind   `json:"kind"`
}

// Call implements chat.Toolbox.
func (t *Tools) Call(ctx context.Context, tc chat.ToolContext, call chat.ToolCall) chat.ToolResult {
	switch call.Name {
	case ToolCreate:
		var args createArgs
		if res, ok := decodeArgs(call, &args, "title, kind, language, content"); !ok {
			return res
		}
		switch {
		case args.Title == nil:
			return toolError(`missing "title": give the document a short title`)
		case args.Kind == nil:
			return toolError(`missing "kind": one of "text", "code", "sheet"`)
		case args.Content == nil:
			return toolError(`missing "content": the whole document`)
		}
		a, v, err := t.svc.Create(ctx, tc.UserID, NewArtifact{
			Title: *args.Title, Kind: Kind(*args.Kind), Language: args.Language, Content: *args.Content,
			ConversationID: tc.ConversationID, MessageID: tc.MessageID, Author: AuthorAssistant, RequestID: tc.RequestID,
		})
		if err != nil {
			return t.failed(ctx, call, err, uuid.Nil)
		}
		return t.done(a, v)
	case ToolUpdate:
		var args updateArgs
		if res, ok := decodeArgs(call, &args, "artifact_id, content, title"); !ok {
			return res
		}
		switch {
		case args.ArtifactID == nil:
			return toolError(`missing "artifact_id": the artifact_id create_artifact returned`)
		case args.Content == nil:
			return toolError(`missing "content": the whole new document`)
		}
		id, err := uuid.Parse(*args.ArtifactID)
		if err != nil || len(*args.ArtifactID) != 36 {
			return toolError(fmt.Sprintf("no such artifact: %q is not an artifact_id; use the artifact_id a create_artifact call returned", truncate(*args.ArtifactID, 64)))
		}
		a, v, err := t.svc.Update(ctx, tc.UserID, Edit{
			ArtifactID: id, Title: args.Title, Content: *args.Content, Author: AuthorAssistant,
			ConversationID: tc.ConversationID, MessageID: tc.MessageID,
		})
		if err != nil {
			return t.failed(ctx, call, err, id)
		}
		return t.done(a, v)
	}
	return toolError(fmt.Sprintf("there is no tool %q; the tools are %s and %s", truncate(call.Name, 64), ToolCreate, ToolUpdate))
}

// decodeArgs parses a call's arguments into args, strictly: a misspelt
// field is reported rather than ignored, so the model can correct it.
func decodeArgs(call chat.ToolCall, args any, fields string) (chat.ToolResult, bool) {
	dec := json.NewDecoder(strings.NewReader(call.Arguments))
	dec.DisallowUnknownFields()
	err := dec.Decode(args)
	if err == nil {
		if _, extra := dec.Token(); !errors.Is(extra, io.EOF) {
			err = errors.New("text after the arguments object")
		}
	}
	if err != nil {
		return toolError(fmt.Sprintf("the arguments of %s are not a JSON object of %s: %v", call.Name, fields, err)), false
	}
	return chat.ToolResult{}, true
}

func (t *Tools) done(a Artifact, v Version) chat.ToolResult {
	body, _ := json.Marshal(saved{ArtifactID: a.ID.String(), Version: v.Number, Title: v.Title, Kind: a.Kind})
	return chat.ToolResult{
		Content:  string(body),
		Artifact: &chat.ArtifactRef{ID: a.ID, Version: v.Number, Title: v.Title, Kind: string(a.Kind)},
	}
}

// failed turns a Service error into what the model is told: the rule its
// arguments broke, that the artifact does not exist (another user's
// included), or that saving failed on the server's side.
func (t *Tools) failed(ctx context.Context, call chat.ToolCall, err error, id uuid.UUID) chat.ToolResult {
	var appErr *apperr.Error
	if errors.As(err, &appErr) {
		switch appErr.Code {
		case apperr.Invalid:
			field := appErr.Field
			if field == "" {
				field = "arguments"
			}
			return toolError(fmt.Sprintf("%s: %s", field, appErr.Message))
		case apperr.NotFound:
			if id != uuid.Nil {
				return toolError(fmt.Sprintf("no such artifact: %s; use the artifact_id a create_artifact call returned, or create a new one", id))
			}
			return toolError("the conversation of this answer no longer exists; nothing was saved")
		}
	}
	t.log.ErrorContext(ctx, "artifact tool failed", "tool", call.Name, "call_id", call.ID, "err", err)
	return toolError("the document could not be saved because of a server error, not because of the arguments; tell the user it was not saved")
}

func toolError(msg string) chat.ToolResult {
	if len(msg) > maxToolResultBytes {
		msg = truncate(msg, maxToolResultBytes)
	}
	return chat.ToolResult{Content: msg, IsError: true}
}

// compactJSON returns raw compacted, once, on the first call: a schema
// that does not parse panics there (TestToolSpecs calls each) instead of
// reaching a model.
func compactJSON(raw string) func() json.RawMessage {
	return sync.OnceValue(func() json.RawMessage {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(raw)); err != nil {
			panic("artifact: invalid tool schema: " + err.Error())
		}
		return b.Bytes()
	})
}

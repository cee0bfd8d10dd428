package artifact_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// toolEnv is the artifact tools on the package's test database, with a
// user, a conversation and an answer being written in it.
type toolEnv struct {
	st    *store.Store
	svc   *artifact.Service
	tools *artifact.Tools
	tc    chat.ToolContext
}

func newToolEnv(t *testing.T) toolEnv {
	t.Helper()
	st := store.New(pgtest.PoolFor(t, store.PrepareConn))
	user := uuid.New()
	conv, err := st.CreateConversation(t.Context(), user, chat.NewConversation{Title: "tools"})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := st.InsertMessage(t.Context(), user, chat.Message{ConversationID: conv.ID, Role: chat.RoleAssistant, Status: chat.StatusCompleted})
	if err != nil {
		t.Fatal(err)
	}
	svc := artifact.NewService(st)
	return toolEnv{st: st, svc: svc, tools: artifact.NewTools(svc, nil), tc: chat.ToolContext{UserID: user, ConversationID: conv.ID, MessageID: answer.ID}}
}

func (e toolEnv) call(t *testing.T, name string, args any) chat.ToolResult {
	t.Helper()
	raw, ok := args.(string)
	if !ok {
		b, err := json.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(b)
	}
	return e.tools.Call(context.Background(), e.tc, chat.ToolCall{ID: "call_1", Name: name, Arguments: raw})
}

// TestToolSpecs: two tools whose parameters are JSON Schemas of objects
// naming their required arguments, each streaming its content.
func TestToolSpecs(t *testing.T) {
	t.Parallel()
	specs := artifact.NewTools(nil, nil).Specs()
	want := map[string][]string{artifact.ToolCreate: {"title", "kind", "content"}, artifact.ToolUpdate: {"artifact_id", "content"}}
	if len(specs) != len(want) {
		t.Fatalf("%d specs, want %d", len(specs), len(want))
	}
	for _, s := range specs {
		var schema struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		}
		if err := json.Unmarshal(s.Parameters, &schema); err != nil {
			t.Fatalf("%s: schema does not parse: %v", s.Name, err)
		}
		if diff := cmp.Diff(want[s.Name], schema.Required); diff != "" || schema.Type != "object" {
			t.Errorf("%s: type %q, required (-want +got):\n%s", s.Name, schema.Type, diff)
		}
		for _, r := range schema.Required {
			if _, ok := schema.Properties[r]; !ok {
				t.Errorf("%s requires %q, which it does not describe", s.Name, r)
			}
		}
		if s.StreamField != "content" || s.Description == "" {
			t.Errorf("%s: stream field %q, description %q", s.Name, s.StreamField, s.Description)
		}
	}
}

// TestToolsWrite: create_artifact then update_artifact write versions
// authored by the assistant and linked to the answer, and tell the model
// (and chat, through Artifact) what they saved.
func TestToolsWrite(t *testing.T) {
	t.Parallel()
	e := newToolEnv(t)
	ctx := t.Context()
	res := e.call(t, artifact.ToolCreate, map[string]string{"title": "fib.py", "kind": "code", "language": "python", "content": "def fib(n): ..."})
	if res.IsError || res.Artifact == nil {
		t.Fatalf("create: %+v", res)
	}
	var told struct {
		ArtifactID string `json:"artifact_id"`
		Version    int    `json:"version"`
		Title      string `json:"title"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(res.Content), &told); err != nil {
		t.Fatalf("the model is told %q: %v", res.Content, err)
	}
	id := res.Artifact.ID
	if told.ArtifactID != id.String() || told.Version != 1 || told.Title != "fib.py" || told.Kind != "code" ||
		*res.Artifact != (chat.ArtifactRef{ID: id, Version: 1, Title: "fib.py", Kind: "code"}) {
		t.Errorf("create told %+v, ref %+v", told, res.Artifact)
	}
	a, v, err := e.svc.Get(ctx, e.tc.UserID, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Language != "python" || a.ConversationID != e.tc.ConversationID || a.MessageID != e.tc.MessageID ||
		v.Author != artifact.AuthorAssistant || v.ConversationID != e.tc.ConversationID || v.MessageID != e.tc.MessageID || v.Content != "def fib(n): ..." {
		t.Errorf("saved %+v %+v", a, v)
	}

	// The model does not track versions: an update writes over the latest,
	// even after the user edited it.
	if _, _, err := e.svc.Update(ctx, e.tc.UserID, artifact.Edit{ArtifactID: id, BaseVersion: 1, Content: "# the user's edit", Author: artifact.AuthorUser}); err != nil {
		t.Fatal(err)
	}
	res = e.call(t, artifact.ToolUpdate, map[string]string{"artifact_id": id.String(), "content": "def fib(n):\n    return n", "title": "fib2.py"})
	if res.IsError || res.Artifact == nil || res.Artifact.Version != 3 || res.Artifact.Title != "fib2.py" {
		t.Fatalf("update: %+v", res)
	}
	_, v, err = e.svc.Get(ctx, e.tc.UserID, id, 3)
	if err != nil {
		t.Fatal(err)
	}
	if v.Author != artifact.AuthorAssistant || v.Content != "def fib(n):\n    return n" || v.Title != "fib2.py" || v.MessageID != e.tc.MessageID {
		t.Errorf("version 3 = %+v", v)
	}
	// Without a title the title stays.
	res = e.call(t, artifact.ToolUpdate, `{"artifact_id": "`+id.String()+`", "content": ""}`)
	if res.IsError || res.Artifact.Version != 4 || res.Artifact.Title != "fib2.py" {
		t.Errorf("update without a title: %+v", res)
	}
}

// TestToolsBadCalls: every malformed call is an error result that tells
// the model what to fix; nothing is saved.
func TestToolsBadCalls(t *testing.T) {
	t.Parallel()
	e := newToolEnv(t)
	other := newToolEnv(t)
	foreign := other.call(t, artifact.ToolCreate, map[string]string{"title": "theirs", "kind": "text", "content": "x"})
	if foreign.IsError {
		t.Fatal(foreign.Content)
	}
	tests := []struct {
		name, tool, args, want string
	}{
		{"ErrNotJSON", artifact.ToolCreate, `{"title": "x", `, "the arguments of create_artifact are not a JSON object of title, kind, language, content"},
		{"ErrNotAnObject", artifact.ToolCreate, `["title"]`, "not a JSON object"},
		{"ErrTrailingText", artifact.ToolCreate, `{"title": "t", "kind": "text", "content": ""} {}`, "text after the arguments object"},
		{"ErrUnknownField", artifact.ToolCreate, `{"title": "t", "kind": "text", "contents": "x"}`, `unknown field "contents"`},
		{"ErrWrongType", artifact.ToolCreate, `{"title": 3, "kind": "text", "content": "x"}`, "title"},
		{"ErrMissingTitle", artifact.ToolCreate, `{"kind": "text", "content": "x"}`, `missing "title"`},
		{"ErrMissingKind", artifact.ToolCreate, `{"title": "t", "content": "x"}`, `missing "kind": one of "text", "code", "sheet"`},
		{"ErrMissingContent", artifact.ToolCreate, `{"title": "t", "kind": "text"}`, `missing "content"`},
		{"ErrUnknownKind", artifact.ToolCreate, `{"title": "t", "kind": "essay", "content": "x"}`, `kind: must be one of text, code, sheet, got "essay"`},
		{"ErrLanguageOnText", artifact.ToolCreate, `{"title": "t", "kind": "text", "language": "go", "content": "x"}`, "language: is for code artifacts only"},
		{"ErrEmptyTitle", artifact.ToolCreate, `{"title": "", "kind": "text", "content": "x"}`, "title: is required"},
		{"ErrSheetNotCSV", artifact.ToolCreate, `{"title": "t", "kind": "sheet", "content": "a,b\n1\n"}`, "content: a sheet must be CSV (RFC 4180, every record with as many fields as the first): line 2"},
		{"ErrContentTooLong", artifact.ToolCreate, `{"title": "t", "kind": "text", "content": "` + strings.Repeat("a", artifact.MaxContentBytes+1) + `"}`, "content: must be at most 1048576 bytes"},
		{"ErrUpdateMissingID", artifact.ToolUpdate, `{"content": "x"}`, `missing "artifact_id"`},
		{"ErrUpdateMissingContent", artifact.ToolUpdate, `{"artifact_id": "` + uuid.NewString() + `"}`, `missing "content"`},
		{"ErrUpdateBadID", artifact.ToolUpdate, `{"artifact_id": "artifact-1", "content": "x"}`, `no such artifact: "artifact-1" is not an artifact_id`},
		{"ErrUpdateUnknownID", artifact.ToolUpdate, `{"artifact_id": "` + uuid.NewString() + `", "content": "x"}`, "no such artifact"},
		{"ErrUpdateAnotherUsers", artifact.ToolUpdate, `{"artifact_id": "` + foreign.Artifact.ID.String() + `", "content": "mine"}`, "no such artifact: " + foreign.Artifact.ID.String()},
		{"ErrUnknownTool", "delete_artifact", `{}`, `there is no tool "delete_artifact"; the tools are create_artifact and update_artifact`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.call(t, tt.tool, tt.args)
			if !res.IsError || res.Artifact != nil || !strings.Contains(res.Content, tt.want) {
				t.Errorf("result %+v, want an error result saying %q", res, tt.want)
			}
			if len(res.Content) > 2<<10 {
				t.Errorf("result of %d bytes, want at most 2 KiB", len(res.Content))
			}
		})
	}
	list, _, err := e.svc.List(t.Context(), e.tc.UserID, artifact.Filter{}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("bad calls saved %d artifacts", len(list))
	}
	_, v, err := other.svc.Get(t.Context(), other.tc.UserID, foreign.Artifact.ID, 0)
	if err != nil || v.Number != 1 || v.Content != "x" {
		t.Errorf("the other user's artifact is now %+v (%v)", v, err)
	}
}

// TestToolsServerError: a failure that is not the model's (the database is
// gone) is an error result that says so, never a Go error or a panic.
func TestToolsServerError(t *testing.T) {
	t.Parallel()
	e := newToolEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := e.tools.Call(ctx, e.tc, chat.ToolCall{Name: artifact.ToolCreate, Arguments: `{"title": "t", "kind": "text", "content": "x"}`})
	if !res.IsError || res.Artifact != nil || !strings.Contains(res.Content, "server error, not because of the arguments") {
		t.Errorf("result %+v", res)
	}
}

package llm_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

var writeTool = chat.ToolSpec{
	Name: "create_artifact", Description: "Create a document.", StreamField: "content",
	Parameters: json.RawMessage(`{"type":"object","properties":{"title":{"type":"string"}}}`),
}

// deltas reads a turn to its end.
func deltasOf(t *testing.T, s chat.ModelStream) []chat.Delta {
	t.Helper()
	var out []chat.Delta
	for range 10_000 {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	t.Fatal("stream did not end")
	return nil
}

// TestOpenAIToolCalls: tools, earlier calls and their results go to the
// provider in OpenAI's wire format, and the calls it streams back come out
// as tool call deltas with finish reason tool_calls.
func TestOpenAIToolCalls(t *testing.T) {
	t.Parallel()
	args := `{"title":"Plan","content":"step one"}`
	srv := llmtest.NewServer(t, llmtest.Turns(llmtest.Turn{Chunks: []string{"Sure."}, Calls: []llmtest.Call{{ID: "call_9", Name: "create_artifact", Arguments: args}}}))
	stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), chat.ModelRequest{
		Model: "gpt-test",
		Tools: []chat.ToolSpec{writeTool},
		Messages: []chat.PromptMessage{
			{Role: chat.RoleUser, Content: "write it"},
			{Role: chat.RoleAssistant, ToolCalls: []chat.ToolCall{{ID: "call_1", Name: "create_artifact", Arguments: `{"title":"old"}`}}},
			{Role: chat.RoleTool, ToolCallID: "call_1", Content: `{"version":1}`},
			{Role: chat.RoleUser, Content: "again"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var text, gotArgs strings.Builder
	var id, name string
	for _, d := range deltasOf(t, stream) {
		text.WriteString(d.Text)
		if c := d.ToolCall; c != nil {
			if c.Index != 0 {
				t.Errorf("call index %d, want 0", c.Index)
			}
			id, name = id+c.ID, name+c.Name
			gotArgs.WriteString(c.Arguments)
		}
	}
	if text.String() != "Sure." || id != "call_9" || name != "create_artifact" || gotArgs.String() != args {
		t.Errorf("got text %q and call %s %s(%s)", text.String(), id, name, gotArgs.String())
	}
	if got := stream.FinishReason(); got != "tool_calls" {
		t.Errorf("finish reason %q, want tool_calls", got)
	}
	req := srv.Requests()[0]
	if diff := cmp.Diff([]string{"create_artifact"}, req.Tools); diff != "" {
		t.Errorf("tools offered (-want +got):\n%s", diff)
	}
	want := []llmtest.RecordedMessage{
		{Role: "user", Content: "write it"},
		{Role: "assistant", ToolCalls: []llmtest.Call{{ID: "call_1", Name: "create_artifact", Arguments: `{"title":"old"}`}}},
		{Role: "tool", Content: `{"version":1}`, ToolCallID: "call_1"},
		{Role: "user", Content: "again"},
	}
	if diff := cmp.Diff(want, req.Messages); diff != "" {
		t.Errorf("messages sent (-want +got):\n%s", diff)
	}
}

// TestOfflineWritesArtifacts: offered the tool and asked to write, the
// offline model calls create_artifact with a document; given the result,
// it says what it wrote; otherwise it answers as ELIZA.
func TestOfflineWritesArtifacts(t *testing.T) {
	t.Parallel()
	p := llm.NewOffline(0)
	ask := func(msgs ...chat.PromptMessage) (chat.ModelStream, []chat.Delta) {
		s, err := p.Stream(t.Context(), chat.ModelRequest{Model: llm.OfflineModel, Tools: []chat.ToolSpec{writeTool}, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, deltasOf(t, s)
	}
	for _, tt := range []struct{ name, message, kind string }{
		{"Text", "Write a short plan for a trip to Lisbon", "text"},
		{"Code", "write a function that greets", "code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, ds := ask(chat.PromptMessage{Role: chat.RoleUser, Content: tt.message})
			var args strings.Builder
			for _, d := range ds {
				if d.ToolCall == nil || d.Text != "" {
					t.Fatalf("delta %+v, want only the tool call", d)
				}
				args.WriteString(d.ToolCall.Arguments)
			}
			var doc struct{ Title, Kind, Content string }
			if err := json.Unmarshal([]byte(args.String()), &doc); err != nil {
				t.Fatalf("arguments %q: %v", args.String(), err)
			}
			if doc.Title == "" || doc.Kind != tt.kind || doc.Content == "" || s.FinishReason() != "tool_calls" {
				t.Errorf("call %+v finishing %q", doc, s.FinishReason())
			}
		})
	}
	_, ds := ask(
		chat.PromptMessage{Role: chat.RoleUser, Content: "write a plan"},
		chat.PromptMessage{Role: chat.RoleAssistant, ToolCalls: []chat.ToolCall{{ID: "call_offline_1", Name: "create_artifact"}}},
		chat.PromptMessage{Role: chat.RoleTool, ToolCallID: "call_offline_1", Content: `{"artifact_id":"x","version":1,"title":"A plan"}`},
	)
	var reply strings.Builder
	for _, d := range ds {
		reply.WriteString(d.Text)
	}
	if got, want := reply.String(), `I wrote "A plan"; it is saved as version 1.`; got != want {
		t.Errorf("reply = %q, want %q", got, want)
	}
	if _, ds := ask(chat.PromptMessage{Role: chat.RoleUser, Content: "I feel tired"}); len(ds) == 0 || ds[0].ToolCall != nil {
		t.Errorf("a message that asks for no document got %+v", ds)
	}
}

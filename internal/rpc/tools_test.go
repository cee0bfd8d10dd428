package rpc_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/redistest"
)

// artifactScript is a model that, asked to draft, creates an artifact,
// then updates the one its result named, then says it is done; anything
// else it answers "ok".
func artifactScript(req llmtest.RecordedRequest) llmtest.Turn {
	last := req.Messages[len(req.Messages)-1]
	switch {
	case last.Role == "user" && strings.HasPrefix(last.Content, "draft"):
		return llmtest.Turn{Chunks: []string{"Drafting."}, Calls: []llmtest.Call{{
			ID: "call_1", Name: "create_artifact", Arguments: `{"title":"Trip plan","kind":"text","content":"Day 1: Alfama"}`,
		}}}
	case last.Role == "tool" && last.ToolCallID == "call_1":
		var res struct {
			ArtifactID string `json:"artifact_id"`
		}
		_ = json.Unmarshal([]byte(last.Content), &res) // a wrong id comes back as a tool error
		return llmtest.Turn{Calls: []llmtest.Call{{
			ID: "call_2", Name: "update_artifact", Arguments: fmt.Sprintf(`{"artifact_id":%q,"content":"Day 1: Alfama\nDay 2: Belém"}`, res.ArtifactID),
		}}}
	case last.Role == "tool":
		return llmtest.Turn{Chunks: []string{" Done."}}
	}
	return llmtest.Turn{Chunks: []string{"ok"}}
}

// eventKinds names a stream's events, runs of artifact deltas as one.
func eventKinds(evs events) string {
	var out []string
	for _, ev := range evs {
		k := kindOf(ev)
		if n := len(out); n > 0 && out[n-1] == k && k == "artifact_delta" {
			continue
		}
		out = append(out, k)
	}
	return strings.Join(out, ",")
}

// TestChatWritesArtifacts: in one answer the model creates an artifact
// and then updates it through tool calls, over every protocol. The client
// sees each call, the document as it is written and each saved version,
// in order; both versions are saved, the assistant's; a resume on another
// instance replays the same events from the shared log; and the next
// turn's prompt carries the calls and their results.
func TestChatWritesArtifacts(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Respond(artifactScript))
	opts := apitest.Options{RedisURL: redistest.URL(t), RedisPrefix: redistest.Prefix(t), Retention: time.Minute}
	a, b := fakeEnv(t, fake, opts), fakeEnv(t, fake, opts)
	ctx := testCtx(t)
	const want = "started,delta,tool_call,artifact_delta,tool_result,tool_call,artifact_delta,tool_result,delta,usage,completed"
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			user := uuid.New()
			c := a.ChatClient(t, protocol, user)
			conv := create(t, c, "trip")
			stream, err := send(ctx, c, conv.Id, "draft a plan")
			if err != nil {
				t.Fatal(err)
			}
			evs, err := collect(t, stream, 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := eventKinds(evs); got != want {
				t.Fatalf("events = %s\nwant     %s", got, want)
			}
			var doc strings.Builder
			var saved []*parleyv1.SavedArtifact
			for _, ev := range evs {
				if d := ev.GetArtifactDelta(); d != nil && d.CallId == "call_2" {
					doc.WriteString(d.Text)
				}
				if r := ev.GetToolResult(); r != nil {
					if r.Error != "" || r.Artifact == nil {
						t.Fatalf("tool result %v, want a saved artifact", r)
					}
					saved = append(saved, r.Artifact)
				}
			}
			if doc.String() != "Day 1: Alfama\nDay 2: Belém" {
				t.Errorf("the update streamed %q", doc.String())
			}
			if len(saved) != 2 || saved[0].ArtifactId != saved[1].ArtifactId || saved[0].Version != 1 || saved[1].Version != 2 {
				t.Fatalf("saved %v, want versions 1 and 2 of one artifact", saved)
			}
			answer := completed(t, evs)
			if answer.Content != "Drafting. Done." || len(answer.ToolUses) != 2 || answer.ToolUses[1].Round != 2 {
				t.Errorf("the answer is %q with tool uses %v", answer.Content, answer.ToolUses)
			}

			// Both versions are saved, written by the assistant.
			versions, err := a.ArtifactClient(t, protocol, user).ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: saved[0].ArtifactId}))
			if err != nil {
				t.Fatal(err)
			}
			if vs := versions.Msg.Versions; len(vs) != 2 || vs[0].Author != parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_ASSISTANT || vs[1].Author != parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_ASSISTANT {
				t.Errorf("versions = %v, want two by the assistant", vs)
			}
			latest, err := a.ArtifactClient(t, protocol, user).GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: saved[0].ArtifactId}))
			if err != nil || latest.Msg.Version.Content != doc.String() {
				t.Errorf("the latest version is %v (%v), want the update's content", latest, err)
			}

			// Another instance replays the answer from the shared log.
			resumed, err := b.ChatClient(t, protocol, user).ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: started(t, evs).GenerationId}))
			if err != nil {
				t.Fatal(err)
			}
			replayed, err := collect(t, resumed, 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := eventKinds(replayed); got != want {
				t.Errorf("resumed on another instance: %s\nwant %s", got, want)
			}

			// The next turn's prompt has the model's calls and their results.
			before := len(fake.Requests())
			if _, err := collectErr(send(ctx, c, conv.Id, "thanks")); err != nil {
				t.Fatal(err)
			}
			reqs := fake.Requests()
			if len(reqs) != before+1 {
				t.Fatalf("%d model requests for the next turn, want 1", len(reqs)-before)
			}
			var roles []string
			for _, m := range reqs[len(reqs)-1].Messages {
				r := m.Role
				for _, call := range m.ToolCalls {
					r += ":" + call.Name
				}
				if m.ToolCallID != "" {
					r += ":" + m.ToolCallID
				}
				roles = append(roles, r)
			}
			if got, want := strings.Join(roles, " "), "user assistant:create_artifact tool:call_1 assistant:update_artifact tool:call_2 assistant user"; got != want {
				t.Errorf("the next prompt is %s\nwant %s", got, want)
			}
		})
	}
}

// TestChatToolRoundBound: a model that never stops calling tools is
// offered them for at most the round bound, then must answer in text.
func TestChatToolRoundBound(t *testing.T) {
	t.Parallel()
	calls := 0
	fake := llmtest.NewServer(t, llmtest.Respond(func(req llmtest.RecordedRequest) llmtest.Turn {
		if len(req.Tools) == 0 {
			return llmtest.Turn{Chunks: []string{"enough"}}
		}
		calls++
		return llmtest.Turn{Calls: []llmtest.Call{{ID: fmt.Sprintf("call_%d", calls), Name: "create_artifact", Arguments: `{"title":"again","kind":"text","content":"x"}`}}}
	}))
	env := fakeEnv(t, fake, apitest.Options{})
	c := env.ChatClient(t, "connect+json", uuid.New())
	evs, err := collectErr(send(testCtx(t), c, create(t, c, "loop").Id, "write forever"))
	if err != nil {
		t.Fatal(err)
	}
	if m := completed(t, evs); m.Content != "enough" || len(m.ToolUses) != 4 {
		t.Errorf("answer %q after %d tool uses, want text after the bound of 4", m.Content, len(m.ToolUses))
	}
}

// TestChatMalformedToolCall: a call with arguments that are not JSON gets
// an error result the model can correct; the answer does not fail.
func TestChatMalformedToolCall(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Respond(func(req llmtest.RecordedRequest) llmtest.Turn {
		last := req.Messages[len(req.Messages)-1]
		if last.Role == "tool" {
			return llmtest.Turn{Chunks: []string{"fixed: " + last.Content}}
		}
		return llmtest.Turn{Calls: []llmtest.Call{{ID: "call_1", Name: "create_artifact", Arguments: `{"title": oops`}}}
	}))
	env := fakeEnv(t, fake, apitest.Options{})
	c := env.ChatClient(t, "grpc", uuid.New())
	evs, err := collectErr(send(testCtx(t), c, create(t, c, "bad").Id, "write"))
	if err != nil {
		t.Fatalf("the answer failed: %v", err)
	}
	var toolErr string
	for _, ev := range evs {
		if r := ev.GetToolResult(); r != nil {
			toolErr = r.Error
		}
	}
	if toolErr == "" || !strings.Contains(completed(t, evs).Content, "not a JSON object") {
		t.Errorf("tool error %q, answer %q: want the model told what was wrong", toolErr, completed(t, evs).Content)
	}
}

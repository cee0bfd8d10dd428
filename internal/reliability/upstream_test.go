package reliability

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// TestUpstreamFaults: the model provider answering 429 or 500, cutting its
// stream, sending a malformed chunk, or going silent. Each answer ends with
// the code a client can act on, keeps what was streamed before the fault
// (saved exactly as the client received it) and frees its slot: the next
// answer on the same instances works.
func TestUpstreamFaults(t *testing.T) {
	c := newCluster(t, options{Instances: 2, Env: []string{"LLM_IDLE_TIMEOUT", "1s"}})
	ctx := testContext(t, 2*time.Minute)
	user := newUser()
	token := c.Supabase.Token(t, user)
	whole := strings.Join(llmtest.DefaultChunks, "")
	cases := []struct {
		name    string
		fault   []llmtest.Option
		reset   []llmtest.Option
		code    connect.Code
		partial string // what the client receives and the database keeps
	}{
		{"429", []llmtest.Option{llmtest.Fail429("7"), llmtest.Times(1)}, nil, connect.CodeResourceExhausted, ""},
		{"500", []llmtest.Option{llmtest.Fail500(), llmtest.Times(1)}, nil, connect.CodeUnavailable, ""},
		{"Cut", []llmtest.Option{llmtest.CutAfter(2)}, []llmtest.Option{llmtest.CutAfter(-1)}, connect.CodeUnavailable, "Hello from"},
		{"Malformed", []llmtest.Option{llmtest.MalformedAfter(3)}, []llmtest.Option{llmtest.MalformedAfter(-1)}, connect.CodeUnavailable, "Hello from the"},
		// Last: Hold has no undo. Two chunks come, then nothing for
		// longer than LLM_IDLE_TIMEOUT.
		{"Silent", []llmtest.Option{llmtest.Hold()}, nil, connect.CodeDeadlineExceeded, "Hello from"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := i % len(c.Inst)
			chat0 := c.Chat(at, token)
			conv := conversation(t, ctx, chat0)
			c.Model.Configure(tc.fault...)
			fault("model " + tc.name)
			if tc.name == "Silent" {
				c.Model.Release(2)
			}
			ans := send(t, ctx, chat0, conv, "Tell me something.")
			ans.drain(t)
			if got := connect.CodeOf(ans.Err); got != tc.code {
				t.Fatalf("the answer ended with %v, want %s", ans.Err, tc.code)
			}
			if ans.Text() != tc.partial {
				t.Errorf("received %q before the fault, want %q", ans.Text(), tc.partial)
			}
			for _, leak := range []string{"127.0.0.1", "chatcmpl", "invalid character", "http://"} {
				if strings.Contains(ans.Err.Error(), leak) {
					t.Errorf("the error shows internals: %v", ans.Err)
				}
			}
			m := c.saved(t, user, ans.AnswerID)
			if m.Status != chat.StatusFailed || m.Content != tc.partial {
				t.Errorf("saved %q (%s), want %q failed", m.Content, m.Status, tc.partial)
			}
			c.Model.Configure(tc.reset...)
			if tc.name == "Silent" {
				return
			}
			// The fault is over: the next answer, on the other instance, is whole.
			next := send(t, ctx, c.Chat((at+1)%len(c.Inst), token), conv, "Again.")
			next.drain(t)
			if next.Completed == nil || next.Text() != whole {
				t.Errorf("the answer after the fault: %q (%v), want %q", next.Text(), next.Err, whole)
			}
		})
	}
}

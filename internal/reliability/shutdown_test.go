package reliability

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// TestSIGTERMMidStream: one of three instances gets SIGTERM while it
// streams an answer that a client on another instance follows. Both
// clients are told unavailable with the same partial text, which is saved
// as interrupted; a client that resumes later on the third instance gets
// that saved answer; the other instances keep answering.
func TestSIGTERMMidStream(t *testing.T) {
	c := newCluster(t, options{Instances: 3, Model: []llmtest.Option{llmtest.Hold()}})
	ctx := testContext(t, time.Minute)
	user := newUser()
	token := c.Supabase.Token(t, user)
	conv := conversation(t, ctx, c.Chat(0, token))
	ans := send(t, ctx, c.Chat(0, token), conv, "Tell me something.")
	c.Model.Release(2)
	partial := strings.Join(llmtest.DefaultChunks[:2], "")
	ans.until(t, len(partial))
	follower := resume(t, ctx, c.Chat(1, token), ans.GenerationID, 0)
	follower.until(t, len(partial))

	if err := c.Inst[0].Terminate(t); err != nil {
		t.Errorf("parley-0 after SIGTERM: %v, want a clean exit", err)
	}
	ans.drain(t)
	follower.drain(t)
	for who, a := range map[string]*answer{"the sender": ans, "the follower": follower} {
		if connect.CodeOf(a.Err) != connect.CodeUnavailable || a.Text() != partial {
			t.Errorf("%s got %q then %v, want %q then unavailable", who, a.Text(), a.Err, partial)
		}
	}
	if m := c.saved(t, user, ans.AnswerID); m.Status != chat.StatusInterrupted || m.Content != partial {
		t.Errorf("saved %q (%s), want %q interrupted", m.Content, m.Status, partial)
	}
	late := resume(t, ctx, c.Chat(2, token), ans.GenerationID, 0)
	late.drain(t)
	if late.Text() != partial {
		t.Errorf("a resume after the shutdown got %q (%v), want %q", late.Text(), late.Err, partial)
	}

	c.Model.Release(1 << 10)
	for _, i := range []int{1, 2} {
		next := send(t, ctx, c.Chat(i, token), conv, "Again.")
		next.drain(t)
		if next.Completed == nil {
			t.Errorf("%s after parley-0 left: %v", c.Inst[i].name, next.Err)
		}
	}
}

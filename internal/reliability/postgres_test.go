package reliability

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// TestPostgresRestartMidStream: PostgreSQL stops while an answer streams
// and starts again a moment later. The answer keeps streaming from memory,
// calls that need the database meanwhile answer unavailable (never
// internal), the answer is saved whole once the database is back, and
// every instance's pool serves again.
func TestPostgresRestartMidStream(t *testing.T) {
	c := newCluster(t, options{Instances: 2, Model: []llmtest.Option{llmtest.Hold()}})
	ctx := testContext(t, time.Minute)
	user := uuid.New()
	token := c.Supabase.Token(t, user)
	a, b := c.Chat(0, token), c.Chat(1, token)
	conv := conversation(t, ctx, a)
	ans := send(t, ctx, a, conv, "Tell me something.")
	c.Model.Release(1)
	ans.until(t, len(llmtest.DefaultChunks[0]))

	c.PG.Stop()
	_, err := b.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if code := connect.CodeOf(err); code != connect.CodeUnavailable {
		t.Errorf("ListConversations with the database down: %v, want unavailable", err)
	} else if strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "SQLSTATE") {
		t.Errorf("the error shows internals: %v", err)
	}
	// The rest of the answer arrives while the database is down.
	c.Model.Release(len(llmtest.DefaultChunks))
	ans.until(t, len(strings.Join(llmtest.DefaultChunks, "")))
	time.Sleep(1500 * time.Millisecond) // a checkpoint fails; the final save retries
	c.PG.Start()
	ans.drain(t)
	if ans.Completed == nil {
		t.Fatalf("the answer ended with %v, want completed once the database is back", ans.Err)
	}
	want := strings.Join(llmtest.DefaultChunks, "")
	if ans.Text() != want || ans.Completed.Content != want {
		t.Errorf("received %q, completed %q, want %q", ans.Text(), ans.Completed.Content, want)
	}
	if m := c.saved(t, user, ans.AnswerID); m.Status != chat.StatusCompleted || m.Content != want {
		t.Errorf("saved %q (%s), want %q completed", m.Content, m.Status, want)
	}
	// Both pools recovered: the next calls succeed on every instance.
	for i := range c.Inst {
		ok := false
		for range 50 {
			if _, err = c.Chat(i, token).ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv})); err == nil {
				ok = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !ok {
			t.Errorf("%s after the database came back: %v", c.Inst[i].name, err)
		}
	}
}

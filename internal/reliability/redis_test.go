package reliability

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// generalLimit is RATE_LIMIT_GENERAL in TestRedisRestart: small enough
// to reach, per user and minute.
const generalLimit = 30

// TestRedisRestart: Redis stops mid-traffic and comes back empty. Limits
// are shared across instances before and after; meanwhile every instance
// limits on its own, calls and answers go on, a stop sent to another
// instance reaches the answer through the database, and a resume on
// another instance says unavailable instead of hanging. Once Redis is
// back, instances share answers' live streams again.
func TestRedisRestart(t *testing.T) {
	c := newCluster(t, options{Instances: 2, Model: []llmtest.Option{llmtest.Hold()},
		Env: []string{"RATE_LIMIT_GENERAL", "30"}})
	ctx := testContext(t, 2*time.Minute)
	whole := strings.Join(llmtest.DefaultChunks, "")

	wantSharedLimit := func(when string) {
		t.Helper()
		token := c.Supabase.Token(t, newUser())
		for n := range generalLimit {
			if _, err := c.Chat(n%2, token).ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{})); err != nil {
				t.Fatalf("%s: call %d of %d: %v", when, n+1, generalLimit, err)
			}
		}
		for i := range c.Inst {
			_, err := c.Chat(i, token).ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("%s: call %d on %s: %v, want resource_exhausted (the limit is shared)", when, generalLimit+1, c.Inst[i].name, err)
			}
		}
	}
	began := time.Now()
	phase := func(name string) { t.Logf("%v: %s", time.Since(began).Round(time.Millisecond), name) }
	wantSharedLimit("before Redis stops")
	phase("shared limit before")

	user := newUser()
	token := c.Supabase.Token(t, user)
	a, b := c.Chat(0, token), c.Chat(1, token)
	conv := conversation(t, ctx, a)

	c.Redis.Stop()
	fault("Redis stopped")
	phase("redis stopped")
	// Calls go on, limited per instance.
	for i := range c.Inst {
		if _, err := c.Chat(i, token).ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv})); err != nil {
			t.Errorf("%s with Redis down: %v", c.Inst[i].name, err)
		}
	}
	phase("calls with redis down")
	// An answer started with Redis down runs; a resume on the other
	// instance cannot read its live log and says so at once.
	ans := send(t, ctx, a, conv, "Tell me something.")
	c.Model.Release(1)
	ans.until(t, len(llmtest.DefaultChunks[0]))
	phase("answer started")
	begin := time.Now()
	blind := resume(t, ctx, b, ans.GenerationID, 0)
	blind.drain(t)
	if connect.CodeOf(blind.Err) != connect.CodeUnavailable || time.Since(begin) > 5*time.Second {
		t.Errorf("a resume on parley-1 with Redis down: %v after %v, want unavailable at once", blind.Err, time.Since(begin))
	}
	phase("blind resume")
	// A stop sent to the other instance reaches it through the database.
	if _, err := b.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: ans.GenerationID})); err != nil {
		t.Fatalf("StopGeneration on parley-1 with Redis down: %v", err)
	}
	phase("StopGeneration returned")
	ans.drain(t)
	if ans.Completed == nil || ans.Completed.Status != parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED {
		t.Errorf("the stopped answer ended with %v (%v), want completed as stopped", ans.Completed, ans.Err)
	}
	if m := c.saved(t, user, ans.AnswerID); m.Status != chat.StatusStopped || m.Content != ans.Text() {
		t.Errorf("saved %q (%s), want %q stopped", m.Content, m.Status, ans.Text())
	}

	phase("stopped through the database")
	c.Redis.Restart()
	phase("redis restarted")
	// The instances reconnect by themselves; limits are shared again.
	eventually(t, 10*time.Second, func() error {
		_, err := c.Chat(0, c.Supabase.Token(t, newUser())).ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
		return err
	})
	phase("reconnected")
	wantSharedLimit("after Redis came back")
	phase("shared limit after")
	// And live streams: a resume on parley-1 follows parley-0's answer.
	c.Model.Release(1 << 10)
	shared := send(t, ctx, a, conv, "Again.")
	follower := resume(t, ctx, b, shared.GenerationID, 0)
	shared.drain(t)
	follower.drain(t)
	if shared.Text() != whole || follower.Text() != whole || follower.Completed == nil {
		t.Errorf("after Redis came back: sender %q, follower %q (%v), want %q for both", shared.Text(), follower.Text(), follower.Err, whole)
	}
}

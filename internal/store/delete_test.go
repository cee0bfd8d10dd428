package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// TestDeleteWaitsForSend: a conversation deleted while an exchange is
// being saved in it settles that exchange too. The exchange's statement
// is held open in a transaction until the delete is seen waiting for it;
// a delete that read its snapshot before taking the conversation's lock
// would then cascade the answer away without giving back the slot and
// the reservation, and nothing would ever release them.
func TestDeleteWaitsForSend(t *testing.T) {
	t.Parallel()
	pool := pgtestPool(t)
	st := store.New(pool)
	ctx := t.Context()
	user := uuid.New()
	conv, err := st.CreateConversation(ctx, user, chat.NewConversation{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	generationID := uuid.New()
	rows, err := sqlcgen.New(tx).InsertMessages(ctx, sqlcgen.InsertMessagesParams{
		ConversationID: conv.ID, UserID: user, Month: month, ReserveTokens: 100, QuotaTokens: 1_000_000, MaxActive: 3,
		UserMessageID: uuid.New(), Content: "hi", CreateTime: now, WithUserMessage: true,
		AssistantMessageID: uuid.New(), Model: "m", GenerationID: &generationID, PromptTokens: 1,
	})
	if err != nil || len(rows) != 2 {
		t.Fatalf("insert: %d rows, %v", len(rows), err)
	}

	type result struct {
		ids []uuid.UUID
		err error
	}
	deleted := make(chan result, 1)
	go func() {
		ids, err := st.DeleteConversation(ctx, user, conv.ID)
		deleted <- result{ids, err}
	}()
	// Wait (bounded) until the delete waits on a lock held by the open
	// exchange, then let the exchange commit.
	var waiting int
	for range 500 {
		// As the database's owner: the service role may not see other
		// sessions' wait events.
		if err := pgtest.Pool(t).QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if waiting == 0 {
		t.Fatal("the delete never waited for the exchange being saved")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-deleted
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.ids) != 1 || res.ids[0] != generationID {
		t.Errorf("the delete reported streaming answers %v, want the one committed while it waited", res.ids)
	}
	u, err := st.TokenUsage(ctx, user, now)
	if err != nil {
		t.Fatal(err)
	}
	if u.Active != 0 || u.Reserved != 0 || u.Used != 1 {
		t.Errorf("after the delete the account is %+v, want nothing held and the prompt estimate charged", u)
	}
}

// TestSaveTitle: a generated title is set once, never over the user's,
// and what writing it cost is charged in the same write, title or not.
func TestSaveTitle(t *testing.T) {
	t.Parallel()
	st := store.New(pgtestPool(t))
	ctx := t.Context()
	user := uuid.New()
	now := time.Now()
	conv, err := st.CreateConversation(ctx, user, chat.NewConversation{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		title   string
		tokens  int64
		wantSet bool
	}{
		{"First", 30, true},
		{"Second", 20, false}, // it has a title now
		{"", 5, false},        // the titler failed after the prompt was sent
	}
	for _, s := range steps {
		set, err := st.SaveTitle(ctx, user, conv.ID, s.title, now, s.tokens)
		if err != nil || set != s.wantSet {
			t.Errorf("SaveTitle(%q) = %v, %v; want %v", s.title, set, err, s.wantSet)
		}
	}
	got, err := st.GetConversation(ctx, user, conv.ID)
	if err != nil || got.Title != "First" {
		t.Errorf("title = %q (%v), want the first", got.Title, err)
	}
	if u, err := st.TokenUsage(ctx, user, now); err != nil || u.Used != 55 {
		t.Errorf("used %d tokens (%v), want every title's cost, 55", u.Used, err)
	}
	if _, err := st.SaveTitle(ctx, uuid.New(), conv.ID, "Stolen", now, 1); err != nil {
		t.Errorf("another user's SaveTitle: %v", err)
	}
	if got, _ := st.GetConversation(ctx, user, conv.ID); got.Title != "First" {
		t.Errorf("another user retitled the conversation: %q", got.Title)
	}
}

// TestExchangeIndexedWhenAnswered: saving an exchange does no search work
// (it is on the way to the first token); the answer's end indexes both
// messages, and then both are found.
func TestExchangeIndexedWhenAnswered(t *testing.T) {
	t.Parallel()
	st := store.New(pgtestPool(t))
	ctx := t.Context()
	user := uuid.New()
	conv, err := st.CreateConversation(ctx, user, chat.NewConversation{})
	if err != nil {
		t.Fatal(err)
	}
	question, answer, err := st.InsertExchange(ctx, user, chat.NewExchange{
		ConversationID: conv.ID, UserMessageID: uuid.New(), Content: "where is zanzibar", AssistantMessageID: uuid.New(),
		GenerationID: uuid.New(), Model: "m", CreateTime: time.Now(), ReserveTokens: 10, QuotaTokens: 1000, MaxActive: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	indexed := func() int {
		var n int
		if err := pgtest.Pool(t).QueryRow(ctx, `SELECT count(*) FROM parley.message_search WHERE message_id = ANY($1)`,
			[]uuid.UUID{question.ID, answer.ID}).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := indexed(); n != 0 {
		t.Errorf("%d messages indexed while the answer streams, want none", n)
	}
	if _, err := st.FinishMessage(ctx, answer.ID, chat.Outcome{Content: "zanzibar is off tanzania", Status: chat.StatusCompleted, Model: "m"}); err != nil {
		t.Fatal(err)
	}
	if n := indexed(); n != 2 {
		t.Errorf("%d messages indexed after the answer ended, want the question and the answer", n)
	}
}

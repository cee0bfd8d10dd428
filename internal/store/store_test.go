package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// pgtestPool is a pool on the package database that runs as the service
// role, so the store's tests also prove it has the privileges they use.
func pgtestPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return openPool(tb, pgtest.URL(tb), db.ServiceRole)
}

// TestErrors: driver errors reach the domain as application errors, and
// rows of other users are absent.
func TestErrors(t *testing.T) {
	t.Parallel()
	st := store.New(pgtestPool(t))
	ctx := context.Background()
	owner := uuid.New()
	conv, err := st.CreateConversation(ctx, owner, chat.NewConversation{Title: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ErrNotFoundForOtherUser", func(t *testing.T) {
		_, err := st.GetConversation(ctx, uuid.New(), conv.ID)
		if apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("err = %v, want not_found", err)
		}
	})
	t.Run("ErrNotFoundInsertIntoOthersConversation", func(t *testing.T) {
		_, err := st.InsertMessage(ctx, uuid.New(), chat.Message{ConversationID: conv.ID, Role: chat.RoleUser, Content: "x", Status: chat.StatusCompleted})
		if apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("err = %v, want not_found", err)
		}
	})
	t.Run("ErrInvalidCheckViolation", func(t *testing.T) {
		_, err := st.InsertMessage(ctx, owner, chat.Message{ConversationID: conv.ID, Role: "robot", Content: "x", Status: chat.StatusCompleted})
		if apperr.CodeOf(err) != apperr.Invalid {
			t.Errorf("err = %v, want invalid", err)
		}
	})
	t.Run("ErrUnavailableWhenDown", func(t *testing.T) {
		down, err := store.Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1", store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		_, err = down.GetConversation(ctx, owner, conv.ID)
		if apperr.CodeOf(err) != apperr.Unavailable {
			t.Errorf("err = %v, want unavailable", err)
		}
	})
	t.Run("ErrUnavailableWhenTerminated", func(t *testing.T) {
		// A server shutting down (or a failover) ends the backends with
		// SQLSTATE 57P01; the next query on such a connection fails so.
		one, err := store.Open(ctx, pgtest.URL(t)+"&pool_max_conns=1&pool_min_conns=0", store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer one.Close()
		var pid int
		if err := one.Pool().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if _, err := pgtest.Pool(t).Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
		_, err = one.GetConversation(ctx, owner, conv.ID)
		if apperr.CodeOf(err) != apperr.Unavailable {
			t.Errorf("err = %v, want unavailable", err)
		}
	})
}

// TestInterruptStale: answers whose instance died are marked interrupted
// and release their reservation and slot, charged an estimate; a late
// finish of the dead run does not settle twice.
func TestInterruptStale(t *testing.T) {
	t.Parallel()
	// A database of its own: the sweep below interrupts every answer
	// streaming in it, other tests' included.
	st := store.New(openPool(t, pgtest.NewDatabase(t), db.ServiceRole))
	ctx := context.Background()
	user := uuid.New()
	conv, err := st.CreateConversation(ctx, user, chat.NewConversation{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	_, answer, err := st.InsertExchange(ctx, user, chat.NewExchange{
		ConversationID: conv.ID, UserMessageID: uuid.New(), Content: "hi", AssistantMessageID: uuid.New(),
		GenerationID: uuid.New(), Model: "m", CreateTime: now, ReserveTokens: 500, QuotaTokens: 1000, MaxActive: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if streaming, err := st.CheckpointMessages(ctx, []chat.Checkpoint{{MessageID: answer.ID, Content: strings.Repeat("x", 40)}}); err != nil || len(streaming) != 1 {
		t.Fatalf("checkpoint: %v %v", streaming, err)
	}
	// An unchanged answer is only asked after: still streaming, its text
	// kept; an unknown one is not streaming.
	gone := uuid.New()
	if streaming, err := st.CheckpointMessages(ctx, []chat.Checkpoint{{MessageID: answer.ID, Unchanged: true}, {MessageID: gone, Unchanged: true}}); err != nil || len(streaming) != 1 || streaming[0] != answer.ID {
		t.Fatalf("unchanged checkpoint: %v %v, want only %s", streaming, err, answer.ID)
	}
	if m, err := st.GetMessage(ctx, user, answer.ID); err != nil || m.Content != strings.Repeat("x", 40) {
		t.Fatalf("after an unchanged checkpoint the text is %q (%v)", m.Content, err)
	}
	if u, _ := st.TokenUsage(ctx, user, now); u.Reserved != 500 || u.Active != 1 {
		t.Fatalf("before the sweep: %+v", u)
	}
	if n, err := st.InterruptStale(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("a fresh answer was swept: %d %v", n, err)
	}
	n, err := st.InterruptStale(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want 1", n, err)
	}
	m, err := st.GetMessage(ctx, user, answer.ID)
	if err != nil || m.Status != chat.StatusInterrupted {
		t.Fatalf("after the sweep: %+v %v", m, err)
	}
	u, err := st.TokenUsage(ctx, user, now)
	if err != nil || u.Reserved != 0 || u.Active != 0 || u.Used != 10 {
		t.Errorf("usage after the sweep: %+v %v, want used 10 (40 characters), nothing reserved or active", u, err)
	}
	if _, err := st.FinishMessage(ctx, answer.ID, chat.Outcome{Status: chat.StatusCompleted, Usage: chat.Usage{CompletionTokens: 99}}); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("late finish: %v, want not_found", err)
	}
	if u2, _ := st.TokenUsage(ctx, user, now); u2 != u {
		t.Errorf("a late finish settled again: %+v, was %+v", u2, u)
	}
}

// TestLoadContextBounded: the walk up a branch stops after about maxBytes
// of text, keeping the newest messages, root first.
func TestLoadContextBounded(t *testing.T) {
	t.Parallel()
	st := store.New(pgtestPool(t))
	ctx := context.Background()
	user := uuid.New()
	conv, err := st.CreateConversation(ctx, user, chat.NewConversation{SystemPrompt: "sys"})
	if err != nil {
		t.Fatal(err)
	}
	parent := uuid.Nil
	var ids []uuid.UUID
	for i := range 10 {
		role := chat.RoleUser
		if i%2 == 1 {
			role = chat.RoleAssistant
		}
		m, err := st.InsertMessage(ctx, user, chat.Message{ConversationID: conv.ID, ParentID: parent, Role: role, Content: strings.Repeat("x", 1000), Status: chat.StatusCompleted})
		if err != nil {
			t.Fatal(err)
		}
		parent = m.ID
		ids = append(ids, m.ID)
	}
	xc, err := st.LoadContext(ctx, user, conv.ID, uuid.Nil, 2500)
	if err != nil {
		t.Fatal(err)
	}
	if xc.SystemPrompt != "sys" || len(xc.Branch) != 3 {
		t.Fatalf("loaded %d messages (system %q), want the newest 3", len(xc.Branch), xc.SystemPrompt)
	}
	for i, m := range xc.Branch {
		if m.ID != ids[7+i] {
			t.Errorf("branch[%d] = %s, want %s", i, m.ID, ids[7+i])
		}
	}
	all, err := st.LoadContext(ctx, user, conv.ID, uuid.Nil, 1<<20)
	if err != nil || len(all.Branch) != 10 || all.Branch[0].ID != ids[0] {
		t.Errorf("unbounded load: %d messages, %v", len(all.Branch), err)
	}
}

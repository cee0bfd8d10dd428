package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

func pgtestPool(tb testing.TB) *pgxpool.Pool { return pgtest.Pool(tb) }

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
}

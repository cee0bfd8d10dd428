package store

import (
	"context"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

func toConversation(r sqlcgen.ParleyConversation) chat.Conversation {
	return chat.Conversation{
		ID:           r.ID,
		UserID:       r.UserID,
		Title:        r.Title,
		SystemPrompt: r.SystemPrompt,
		Model:        r.Model,
		CreateTime:   r.CreateTime,
		UpdateTime:   r.UpdateTime,
	}
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateConversation implements chat.Store.
func (s *Store) CreateConversation(ctx context.Context, userID uuid.UUID, c chat.NewConversation) (chat.Conversation, error) {
	row, err := s.q.CreateConversation(ctx, sqlcgen.CreateConversationParams{
		UserID:       userID,
		Title:        c.Title,
		SystemPrompt: c.SystemPrompt,
		Model:        c.Model,
		RequestID:    nonEmpty(c.RequestID),
	})
	if err != nil {
		return chat.Conversation{}, interpretError(err, "conversation")
	}
	return toConversation(row), nil
}

// GetConversation implements chat.Store.
func (s *Store) GetConversation(ctx context.Context, userID, conversationID uuid.UUID) (chat.Conversation, error) {
	row, err := s.q.GetConversation(ctx, sqlcgen.GetConversationParams{ID: conversationID, UserID: userID})
	if err != nil {
		return chat.Conversation{}, interpretError(err, "conversation")
	}
	return toConversation(row), nil
}

// ListConversations implements chat.Store.
func (s *Store) ListConversations(ctx context.Context, userID uuid.UUID, after *chat.Cursor, limit int) ([]chat.Conversation, error) {
	arg := sqlcgen.ListConversationsParams{UserID: userID, PageLimit: int32(limit)}
	if after != nil {
		arg.AfterTime, arg.AfterID = &after.Time, &after.ID
	}
	rows, err := s.q.ListConversations(ctx, arg)
	if err != nil {
		return nil, interpretError(err, "conversations")
	}
	out := make([]chat.Conversation, len(rows))
	for i, r := range rows {
		out[i] = toConversation(r)
	}
	return out, nil
}

// UpdateConversation implements chat.Store.
func (s *Store) UpdateConversation(ctx context.Context, userID, conversationID uuid.UUID, p chat.ConversationPatch) (chat.Conversation, error) {
	row, err := s.q.UpdateConversation(ctx, sqlcgen.UpdateConversationParams{
		ID:           conversationID,
		UserID:       userID,
		Title:        p.Title,
		SystemPrompt: p.SystemPrompt,
		Model:        p.Model,
	})
	if err != nil {
		return chat.Conversation{}, interpretError(err, "conversation")
	}
	return toConversation(row), nil
}

// DeleteConversation implements chat.Store in one transaction: the
// conversation's row is locked first (LockConversation says why), then its
// streaming answers are settled and it is deleted.
func (s *Store) DeleteConversation(ctx context.Context, userID, conversationID uuid.UUID) ([]uuid.UUID, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, interpretError(err, "conversation")
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := s.q.WithTx(tx)
	if _, err := q.LockConversation(ctx, sqlcgen.LockConversationParams{ID: conversationID, UserID: userID}); err != nil {
		return nil, interpretError(err, "conversation")
	}
	row, err := q.DeleteConversation(ctx, sqlcgen.DeleteConversationParams{ID: conversationID, UserID: userID})
	if err != nil {
		return nil, interpretError(err, "conversation")
	}
	if row.Deleted == 0 {
		return nil, apperr.New(apperr.NotFound, "conversation not found")
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, interpretError(err, "conversation")
	}
	return row.GenerationIds, nil
}

package store

import (
	"context"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func nonNil(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func toMessage(r sqlcgen.ParleyMessage) chat.Message {
	return chat.Message{
		ID:             r.ID,
		ConversationID: r.ConversationID,
		ParentID:       deref(r.ParentID),
		Role:           chat.Role(r.Role),
		Content:        r.Content,
		Status:         chat.Status(r.Status),
		Model:          r.Model,
		Usage:          chat.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens},
		FinishReason:   r.FinishReason,
		GenerationID:   deref(r.GenerationID),
		CreateTime:     r.CreateTime,
		UpdateTime:     r.UpdateTime,
	}
}

// ListMessages implements chat.Store.
func (s *Store) ListMessages(ctx context.Context, userID, conversationID uuid.UUID, after *chat.Cursor, limit int) ([]chat.Message, error) {
	// An empty page must still tell "no messages yet" from "no such
	// conversation", so ownership is checked first.
	if _, err := s.GetConversation(ctx, userID, conversationID); err != nil {
		return nil, err
	}
	arg := sqlcgen.ListMessagesParams{ConversationID: conversationID, UserID: userID, PageLimit: int32(limit)}
	if after != nil {
		arg.AfterTime, arg.AfterID = &after.Time, &after.ID
	}
	rows, err := s.q.ListMessages(ctx, arg)
	if err != nil {
		return nil, interpretError(err, "messages")
	}
	out := make([]chat.Message, len(rows))
	for i, r := range rows {
		out[i] = toMessage(r)
	}
	return out, nil
}

// InsertMessage saves a message as it is given (tests and the generation
// pipeline use it). The conversation must belong to the user.
func (s *Store) InsertMessage(ctx context.Context, userID uuid.UUID, m chat.Message, clientMessageID string) (chat.Message, error) {
	row, err := s.q.InsertMessage(ctx, sqlcgen.InsertMessageParams{
		ConversationID:  m.ConversationID,
		UserID:          userID,
		ParentID:        nonNil(m.ParentID),
		Role:            string(m.Role),
		Content:         m.Content,
		Status:          string(m.Status),
		Model:           m.Model,
		ClientMessageID: nonEmpty(clientMessageID),
		GenerationID:    nonNil(m.GenerationID),
	})
	if err != nil {
		return chat.Message{}, interpretError(err, "message")
	}
	return toMessage(row), nil
}

package store

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
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
		ToolRounds:     toToolRounds(r.ToolRounds),
		Cached:         r.Cached,
	}
}

// toToolRounds decodes an answer's tool_rounds column. The store wrote it
// from chat.ToolRound, so a value that does not decode is a bug or a
// manual edit: the rounds are then left out rather than the message lost.
func toToolRounds(raw []byte) []chat.ToolRound {
	if len(raw) == 0 {
		return nil
	}
	var rounds []chat.ToolRound
	if err := json.Unmarshal(raw, &rounds); err != nil {
		return nil
	}
	return rounds
}

// fromToolRounds encodes an answer's rounds for the tool_rounds column;
// nil (SQL NULL) when there are none.
func fromToolRounds(rounds []chat.ToolRound) ([]byte, error) {
	if len(rounds) == 0 {
		return nil, nil
	}
	return json.Marshal(rounds)
}

// ListMessages implements chat.Store: a page of the branch ending at
// leafID (the active branch when uuid.Nil), root first.
func (s *Store) ListMessages(ctx context.Context, userID, conversationID, leafID uuid.UUID, after *chat.Cursor, limit int) ([]chat.Message, error) {
	arg := sqlcgen.ListBranchParams{ConversationID: conversationID, UserID: userID, LeafID: nonNil(leafID), PageLimit: int32(limit)}
	if after != nil {
		arg.AfterTime, arg.AfterID = &after.Time, &after.ID
	}
	rows, err := s.q.ListBranch(ctx, arg)
	if err != nil {
		return nil, interpretError(err, "messages")
	}
	if len(rows) == 0 && after == nil {
		// An empty first page must still tell "no messages yet" from "no
		// such conversation" (or a leaf that is not in it).
		if _, err := s.GetConversation(ctx, userID, conversationID); err != nil {
			return nil, err
		}
		if leafID != uuid.Nil {
			return nil, apperr.New(apperr.NotFound, "message not found")
		}
	}
	out := make([]chat.Message, len(rows))
	for i, r := range rows {
		out[i] = toMessage(r.ParleyMessage)
		out[i].SiblingIDs = r.SiblingIds
		out[i].Rating = toRating(r.Rating, r.RatingComment, r.RatingTags, r.RatingTime)
		if out[i].Attachments, err = attachmentsJSON(r.Attachments, r.ParleyMessage.ID, r.ParleyMessage.ConversationID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// InsertMessage saves a message as it is given, for tests that need
// messages without a generation. The conversation must belong to the user.
func (s *Store) InsertMessage(ctx context.Context, userID uuid.UUID, m chat.Message) (chat.Message, error) {
	if m.ID == uuid.Nil {
		m.ID = uuid.New()
	}
	row, err := s.q.InsertMessage(ctx, sqlcgen.InsertMessageParams{
		ID: m.ID, ConversationID: m.ConversationID, UserID: userID, ParentID: nonNil(m.ParentID),
		Role: string(m.Role), Content: m.Content, Status: string(m.Status), Model: m.Model,
	})
	if err != nil {
		return chat.Message{}, interpretError(err, "conversation")
	}
	if _, err := s.q.SetActiveLeaf(ctx, sqlcgen.SetActiveLeafParams{LeafID: &m.ID, ID: m.ConversationID, UserID: userID}); err != nil {
		return chat.Message{}, interpretError(err, "conversation")
	}
	return toMessage(row), nil
}

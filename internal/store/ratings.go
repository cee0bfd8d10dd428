package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// toRating is a rating from ListBranch's left join: nil when unrated.
func toRating(value, comment *string, tags []string, at *time.Time) *chat.Rating {
	if value == nil || at == nil {
		return nil
	}
	return &chat.Rating{Value: chat.RatingValue(*value), Text: deref(comment), Tags: tags, UpdateTime: *at}
}

// SaveRating implements chat.RatingStore.
func (s *Store) SaveRating(ctx context.Context, userID, messageID uuid.UUID, r chat.Rating) (chat.Rating, error) {
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	row, err := s.q.UpsertRating(ctx, sqlcgen.UpsertRatingParams{
		MessageID: messageID, UserID: userID, Rating: string(r.Value), Comment: r.Text, Tags: tags,
	})
	if err != nil {
		return chat.Rating{}, interpretError(err, "message")
	}
	return chat.Rating{Value: chat.RatingValue(row.Rating), Text: row.Comment, Tags: row.Tags, UpdateTime: row.UpdateTime}, nil
}

// DeleteRating implements chat.RatingStore.
func (s *Store) DeleteRating(ctx context.Context, userID, messageID uuid.UUID) error {
	_, err := s.q.DeleteRating(ctx, sqlcgen.DeleteRatingParams{MessageID: messageID, UserID: userID})
	return interpretError(err, "rating")
}

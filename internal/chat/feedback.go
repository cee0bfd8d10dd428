package chat

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Limits on feedback.
const (
	MaxRatingTextRunes = 2000
	MaxRatingTags      = 10
	MaxRatingTagRunes  = 40
)

// RatingValue is a thumbs up or down.
type RatingValue string

// The ratings. RatingNone is only asked for: it removes a rating.
const (
	RatingUp   RatingValue = "up"
	RatingDown RatingValue = "down"
	RatingNone RatingValue = "none"
)

// Rating is a user's rating of one assistant message.
type Rating struct {
	Value      RatingValue // RatingUp or RatingDown
	Text       string
	Tags       []string
	UpdateTime time.Time
}

// RatingStore saves ratings. Both methods treat other users' messages as
// absent (apperr NotFound).
type RatingStore interface {
	// GetMessage returns one of the user's messages.
	GetMessage(ctx context.Context, userID, messageID uuid.UUID) (Message, error)
	// SaveRating sets or replaces the user's rating of the message.
	SaveRating(ctx context.Context, userID, messageID uuid.UUID, r Rating) (Rating, error)
	// DeleteRating removes it; removing a rating that is not there is not
	// an error.
	DeleteRating(ctx context.Context, userID, messageID uuid.UUID) error
}

// Feedback applies the rules of ratings.
type Feedback struct{ store RatingStore }

// NewFeedback returns a Feedback on store.
func NewFeedback(store RatingStore) *Feedback { return &Feedback{store: store} }

// RateMessage sets, changes or (RatingNone) removes the user's rating of
// an assistant message and returns it (nil after a removal). It returns
// apperr Invalid for a bad rating, text or tag and for a message that is
// not an answer, FailedPrecondition for an answer still streaming, and
// NotFound unless the message is the user's.
func (f *Feedback) RateMessage(ctx context.Context, userID, messageID uuid.UUID, r Rating) (*Rating, error) {
	if err := checkRating(&r); err != nil {
		return nil, err
	}
	m, err := f.store.GetMessage(ctx, userID, messageID)
	if err != nil {
		return nil, err
	}
	if m.Role != RoleAssistant {
		return nil, apperr.InvalidField("message_id", "names a %s message; only the assistant's answers can be rated", m.Role)
	}
	if !m.Ended() {
		return nil, apperr.New(apperr.FailedPrecondition, "the answer is still being written: rate it once it has ended")
	}
	if r.Value == RatingNone {
		return nil, f.store.DeleteRating(ctx, userID, messageID)
	}
	saved, err := f.store.SaveRating(ctx, userID, messageID, r)
	if err != nil {
		return nil, err
	}
	return &saved, nil
}

// checkRating validates r and normalizes its tags (trimmed, repeats kept
// once, in order).
func checkRating(r *Rating) error {
	switch r.Value {
	case RatingUp, RatingDown:
	case RatingNone:
		r.Text, r.Tags = "", nil
		return nil
	case "":
		return apperr.InvalidField("rating", "is required: RATING_UP, RATING_DOWN, or RATING_NONE to remove a rating")
	default:
		return apperr.InvalidField("rating", "must be RATING_UP, RATING_DOWN or RATING_NONE")
	}
	if n := utf8.RuneCountInString(r.Text); n > MaxRatingTextRunes {
		return apperr.InvalidField("text", "must be at most %d characters, got %d", MaxRatingTextRunes, n)
	}
	if len(r.Tags) > MaxRatingTags {
		return apperr.InvalidField("tags", "must hold at most %d tags, got %d", MaxRatingTags, len(r.Tags))
	}
	tags := make([]string, 0, len(r.Tags))
	seen := map[string]bool{}
	for i, tag := range r.Tags {
		tag = strings.TrimSpace(tag)
		if n := utf8.RuneCountInString(tag); n == 0 || n > MaxRatingTagRunes {
			return apperr.InvalidField(fmt.Sprintf("tags[%d]", i), "must be 1 to %d characters, got %d", MaxRatingTagRunes, n)
		}
		if !seen[tag] {
			seen[tag] = true
			tags = append(tags, tag)
		}
	}
	r.Tags = tags
	return nil
}

// Package user holds the rules of a user's own account: the profile made
// from their token, their preferences, what they used this month, and the
// deletion of everything they own. It declares the Store it needs;
// internal/store implements it.
package user

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Bounds of the preferences, in characters (runes), as the database checks
// them.
const (
	MaxDisplayNameRunes  = 100
	MaxSystemPromptRunes = 8000
	// maxModelBytes bounds a model name before it is looked up.
	maxModelBytes = 200
)

// Identity is what the request's verified token says about the caller.
type Identity struct {
	UserID    uuid.UUID
	Email     string
	Anonymous bool
}

// Preferences are the user's choices, used where a request makes none.
type Preferences struct {
	DisplayName string
	// DefaultModel is used by conversations created without a model.
	DefaultModel string
	// DefaultSystemPrompt is used by conversations created without one.
	DefaultSystemPrompt string
}

// Profile is a user's row: their identity as of their newest token and
// their preferences.
type Profile struct {
	Identity
	Preferences
	CreateTime time.Time
	UpdateTime time.Time
}

// Patch changes the preferences that are non-nil.
type Patch struct {
	DisplayName         *string
	DefaultModel        *string
	DefaultSystemPrompt *string
}

// Store keeps profiles. Implementations return apperr errors
// (Unavailable, DeadlineExceeded, Invalid for a value the database
// refuses) and anything else as internal.
type Store interface {
	// UpsertProfile creates the profile of id.UserID unless it exists,
	// copies id's email and anonymous flag into it, applies p, and returns
	// it, in one atomic statement.
	UpsertProfile(ctx context.Context, id Identity, p Patch) (Profile, error)
	UsageStore
	DeleteStore
	ExportStore
}

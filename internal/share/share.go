// Package share holds Parley's share links: read-only snapshots of a
// conversation's active branch, taken when the owner shares it and read by
// anyone who has the share's id.
//
// A snapshot is built here from the branch (the rules of what a reader may
// see live in snapshot.go) and stored whole, so what a share shows never
// changes: messages written later are not in it, and a reader's call reads
// one row. The package declares the Store it needs; internal/store
// implements it.
package share

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
)

// Share is one published snapshot, as its owner sees it.
type Share struct {
	ID                  string
	ConversationID      uuid.UUID
	Title               string
	IncludeSystemPrompt bool
	MessageCount        int
	CreateTime          time.Time
}

// Snapshot is what a reader of a share sees. It holds nothing that names
// the owner: no user id, no email, no message or conversation ids.
type Snapshot struct {
	Title string `json:"title"`
	// SystemPrompt is empty unless the owner chose to include it.
	SystemPrompt string     `json:"system_prompt,omitempty"`
	Messages     []Message  `json:"messages"`
	Artifacts    []Artifact `json:"artifacts"`
	// CreateTime is when the snapshot was taken (from the share's row).
	CreateTime time.Time `json:"-"`
}

// Message is one message of a snapshot.
type Message struct {
	Role       chat.Role     `json:"role"`
	Content    string        `json:"content"`
	Model      string        `json:"model,omitempty"`
	CreateTime time.Time     `json:"create_time"`
	Artifacts  []ArtifactRef `json:"artifacts,omitempty"`
}

// ArtifactRef names an artifact version a message wrote.
type ArtifactRef struct {
	ID      uuid.UUID `json:"id"`
	Version int       `json:"version"`
	Title   string    `json:"title"`
	Kind    string    `json:"kind"`
}

// Artifact is an artifact version shown in full.
type Artifact struct {
	ID       uuid.UUID `json:"id"`
	Version  int       `json:"version"`
	Title    string    `json:"title"`
	Kind     string    `json:"kind"`
	Language string    `json:"language,omitempty"`
	Content  string    `json:"content"`
}

// VersionKey names one version of an artifact.
type VersionKey struct {
	ID      uuid.UUID
	Version int
}

// NewShare is a share to save.
type NewShare struct {
	ID                  string
	ConversationID      uuid.UUID
	IncludeSystemPrompt bool
	Snapshot            Snapshot
}

// Cursor is a keyset position in ListShares: the create time and id of a
// page's last share.
type Cursor struct {
	Time time.Time
	ID   string
}

// Store persists shares. Every method that takes a user id treats other
// users' rows as absent (apperr NotFound).
type Store interface {
	// GetConversation returns one of the user's conversations.
	GetConversation(ctx context.Context, userID, conversationID uuid.UUID) (chat.Conversation, error)
	// ListMessages returns up to limit messages of the conversation's
	// active branch (leafID uuid.Nil), root first, as chat.Store does.
	ListMessages(ctx context.Context, userID, conversationID, leafID uuid.UUID, after *chat.Cursor, limit int) ([]chat.Message, error)
	// ArtifactVersions returns those of the versions that exist and are the
	// user's, in any order.
	ArtifactVersions(ctx context.Context, userID uuid.UUID, keys []VersionKey) ([]Artifact, error)
	// CountShares is how many live shares one of the user's
	// conversations has.
	CountShares(ctx context.Context, userID, conversationID uuid.UUID) (int, error)
	// InsertShare saves a share of one of the user's conversations.
	InsertShare(ctx context.Context, userID uuid.UUID, s NewShare) (Share, error)
	// GetSnapshot returns a share's snapshot, whoever asks.
	GetSnapshot(ctx context.Context, shareID string) (Snapshot, error)
	// ListShares returns up to limit of the user's shares after the
	// cursor (only conversationID's unless it is uuid.Nil), newest first.
	ListShares(ctx context.Context, userID, conversationID uuid.UUID, after *Cursor, limit int) ([]Share, error)
	// DeleteShare deletes one of the user's shares.
	DeleteShare(ctx context.Context, userID uuid.UUID, shareID string) error
}

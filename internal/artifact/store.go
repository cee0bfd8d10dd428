package artifact

import (
	"context"

	"github.com/google/uuid"
)

// Store persists artifacts and their versions. Every method takes the
// owner's user id and treats other users' rows as absent (apperr NotFound).
type Store interface {
	// CreateArtifact saves an artifact and its version 1, or, when a.RequestID
	// was used before by the user, returns that artifact and its latest
	// version. It returns apperr NotFound when a.ConversationID is not the
	// user's or a.MessageID is not in it.
	CreateArtifact(ctx context.Context, userID uuid.UUID, a NewArtifact) (Artifact, Version, error)
	// GetArtifact returns an artifact and one of its versions, the latest
	// when version is 0 (apperr NotFound for either).
	GetArtifact(ctx context.Context, userID, artifactID uuid.UUID, version int) (Artifact, Version, error)
	// GetHead returns an artifact without reading any version's content
	// (apperr NotFound).
	GetHead(ctx context.Context, userID, artifactID uuid.UUID) (Artifact, error)
	// ListArtifacts returns up to limit artifacts after the cursor, newest
	// update first, matching f.
	ListArtifacts(ctx context.Context, userID uuid.UUID, f Filter, after *Cursor, limit int) ([]Artifact, error)
	// AddVersion saves e as the artifact's next version and returns the
	// artifact and the version (with its content). It returns the error of
	// Conflict when e.BaseVersion is set and no longer the latest, and
	// apperr NotFound when the artifact is absent. A conversation or message
	// that is not the user's is not linked.
	AddVersion(ctx context.Context, userID uuid.UUID, e Edit) (Artifact, Version, error)
	// ListVersions returns up to limit versions below beforeVersion (all
	// when 0), newest first, without their content; apperr NotFound when
	// the artifact is absent.
	ListVersions(ctx context.Context, userID, artifactID uuid.UUID, beforeVersion, limit int) ([]Version, error)
	// DeleteArtifact deletes an artifact and its versions (apperr NotFound
	// when absent).
	DeleteArtifact(ctx context.Context, userID, artifactID uuid.UUID) error
}

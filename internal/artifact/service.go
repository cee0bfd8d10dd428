package artifact

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/pagetoken"
)

// Service applies the artifact rules on top of a Store.
type Service struct {
	store Store
}

// NewService returns a Service on store.
func NewService(store Store) *Service {
	return &Service{store: store}
}

// Create validates and creates an artifact as its version 1. It returns
// apperr Invalid naming the field for bad input, NotFound when the
// conversation or message is not the user's. A retry with the same
// RequestID returns the first artifact.
func (s *Service) Create(ctx context.Context, userID uuid.UUID, a NewArtifact) (Artifact, Version, error) {
	if err := checkTitle(a.Title); err != nil {
		return Artifact{}, Version{}, err
	}
	if err := checkKind(a.Kind, a.Language); err != nil {
		return Artifact{}, Version{}, err
	}
	if err := checkContent(a.Kind, a.Content); err != nil {
		return Artifact{}, Version{}, err
	}
	if a.MessageID != uuid.Nil && a.ConversationID == uuid.Nil {
		return Artifact{}, Version{}, apperr.InvalidField("conversation_id", "is required with message_id: name the message's conversation")
	}
	if len(a.RequestID) > MaxRequestIDBytes {
		return Artifact{}, Version{}, apperr.InvalidField("request_id", "must be at most %d bytes", MaxRequestIDBytes)
	}
	if a.Author == "" {
		a.Author = AuthorUser
	}
	return s.store.CreateArtifact(ctx, userID, a)
}

// Get returns an artifact and its version (the latest when version is 0).
// It returns apperr NotFound unless the user owns the artifact and it has
// that version, Invalid for a negative version.
func (s *Service) Get(ctx context.Context, userID, artifactID uuid.UUID, version int) (Artifact, Version, error) {
	if version < 0 {
		return Artifact{}, Version{}, apperr.InvalidField("version", "must be a version number from 1, or 0 for the latest, got %d", version)
	}
	a, v, err := s.store.GetArtifact(ctx, userID, artifactID, version)
	if version > 0 && apperr.IsNotFound(err) {
		return Artifact{}, Version{}, s.noVersion(ctx, userID, artifactID, version, err)
	}
	return a, v, err
}

// noVersion explains a version that was not found: the artifact has no
// such version, or there is no such artifact of the user's (err).
func (s *Service) noVersion(ctx context.Context, userID, artifactID uuid.UUID, version int, err error) error {
	head, headErr := s.store.GetHead(ctx, userID, artifactID)
	if headErr != nil {
		return err
	}
	return apperr.New(apperr.NotFound, "the artifact has no version %d; its versions are 1 to %d", version, head.LatestVersion)
}

// List returns a page of the user's artifacts matching f, newest update
// first, and the next page's token ("" on the last). It returns apperr
// Invalid for a bad page size, token or kind.
func (s *Service) List(ctx context.Context, userID uuid.UUID, f Filter, pageSize int, pageToken string) ([]Artifact, string, error) {
	if f.Kind != "" && !f.Kind.Valid() {
		return nil, "", apperr.InvalidField("kind", "must be one of text, code, sheet, or unset for every kind")
	}
	size, err := pageSizeOf(pageSize)
	if err != nil {
		return nil, "", err
	}
	scope := listScope(userID, f)
	raw, err := pagetoken.Decode("artifacts", scope, pageToken, 24)
	if err != nil {
		return nil, "", err
	}
	var after *Cursor
	if raw != nil {
		after = &Cursor{Time: time.UnixMicro(int64(binary.BigEndian.Uint64(raw[:8]))).UTC()}
		copy(after.ID[:], raw[8:])
	}
	items, err := s.store.ListArtifacts(ctx, userID, f, after, size+1)
	if err != nil {
		return nil, "", err
	}
	if len(items) <= size {
		return items, "", nil
	}
	items = items[:size]
	last := items[size-1]
	cursor := binary.BigEndian.AppendUint64(nil, uint64(last.UpdateTime.UnixMicro()))
	return items, pagetoken.Encode("artifacts", scope, append(cursor, last.ID[:]...)), nil
}

// listScope binds a token to the user and the filter it pages.
func listScope(userID uuid.UUID, f Filter) []byte {
	scope := append(userID[:len(userID):len(userID)], f.ConversationID[:]...)
	return append(scope, f.Kind...)
}

// Update saves a new version of an artifact. It returns apperr Invalid
// naming the field for bad input, NotFound unless the user owns the
// artifact, and Aborted (Conflict) when e.BaseVersion is set and a newer
// version exists.
func (s *Service) Update(ctx context.Context, userID uuid.UUID, e Edit) (Artifact, Version, error) {
	if e.BaseVersion < 0 {
		return Artifact{}, Version{}, apperr.InvalidField("base_version", "must be the version you last read, from 1, got %d", e.BaseVersion)
	}
	if e.Title != nil {
		if err := checkTitle(*e.Title); err != nil {
			return Artifact{}, Version{}, err
		}
	}
	// The content's rules depend on the kind, which only the store knows:
	// the size and encoding are checked first, so an oversized request
	// costs no round trip; a sheet's CSV is checked against the kind read.
	if err := checkContent("", e.Content); err != nil {
		return Artifact{}, Version{}, err
	}
	if e.Author == "" {
		e.Author = AuthorUser
	}
	a, err := s.store.GetHead(ctx, userID, e.ArtifactID)
	if err != nil {
		return Artifact{}, Version{}, err
	}
	if err := checkContent(a.Kind, e.Content); err != nil {
		return Artifact{}, Version{}, err
	}
	if e.BaseVersion > 0 && e.BaseVersion != a.LatestVersion {
		// Saves the round trip; AddVersion checks again, atomically.
		return Artifact{}, Version{}, Conflict(e.BaseVersion, a.LatestVersion)
	}
	return s.store.AddVersion(ctx, userID, e)
}

// Restore saves a new version whose title and content are those of
// version. It returns apperr NotFound unless the user owns the artifact
// and it has that version, Aborted (Conflict) when baseVersion is not the
// latest, Invalid for bad version numbers.
func (s *Service) Restore(ctx context.Context, userID, artifactID uuid.UUID, version, baseVersion int) (Artifact, Version, error) {
	if version < 1 {
		return Artifact{}, Version{}, apperr.InvalidField("version", "must be the number of the version to restore, from 1, got %d", version)
	}
	if baseVersion < 1 {
		return Artifact{}, Version{}, apperr.InvalidField("base_version", "must be the version you last read, from 1, got %d", baseVersion)
	}
	a, old, err := s.Get(ctx, userID, artifactID, version)
	if err != nil {
		return Artifact{}, Version{}, err
	}
	if baseVersion != a.LatestVersion {
		return Artifact{}, Version{}, Conflict(baseVersion, a.LatestVersion)
	}
	return s.store.AddVersion(ctx, userID, Edit{
		ArtifactID: artifactID, BaseVersion: baseVersion, Title: &old.Title, Content: old.Content, Author: AuthorUser,
	})
}

// ListVersions returns a page of an artifact's versions, newest first,
// without their content, and the next page's token. It returns apperr
// NotFound unless the user owns the artifact, Invalid for a bad page size
// or token.
func (s *Service) ListVersions(ctx context.Context, userID, artifactID uuid.UUID, pageSize int, pageToken string) ([]Version, string, error) {
	size, err := pageSizeOf(pageSize)
	if err != nil {
		return nil, "", err
	}
	scope := append(userID[:len(userID):len(userID)], artifactID[:]...)
	raw, err := pagetoken.Decode("artifact_versions", scope, pageToken, 4)
	if err != nil {
		return nil, "", err
	}
	before := 0
	if raw != nil {
		before = int(binary.BigEndian.Uint32(raw))
	}
	items, err := s.store.ListVersions(ctx, userID, artifactID, before, size+1)
	if err != nil {
		return nil, "", err
	}
	if len(items) <= size {
		return items, "", nil
	}
	items = items[:size]
	cursor := binary.BigEndian.AppendUint32(nil, uint32(items[size-1].Number))
	return items, pagetoken.Encode("artifact_versions", scope, cursor), nil
}

// Delete removes an artifact and its versions. It returns apperr NotFound
// unless the user owns the artifact.
func (s *Service) Delete(ctx context.Context, userID, artifactID uuid.UUID) error {
	return s.store.DeleteArtifact(ctx, userID, artifactID)
}

func pageSizeOf(size int) (int, error) {
	switch {
	case size == 0:
		return DefaultPageSize, nil
	case size < 0 || size > MaxPageSize:
		return 0, apperr.InvalidField("page_size", "must be between 1 and %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, size)
	}
	return size, nil
}

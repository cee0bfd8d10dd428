package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// artifactRow is the artifact columns every artifact query returns; sqlc
// gives each query its own struct of them, which converts to this one.
type artifactRow = sqlcgen.GetArtifactHeadRow

func toArtifact(r artifactRow) artifact.Artifact {
	return artifact.Artifact{
		ID:             r.ID,
		UserID:         r.UserID,
		Title:          r.Title,
		Kind:           artifact.Kind(r.Kind),
		Language:       r.Language,
		ConversationID: deref(r.ConversationID),
		MessageID:      deref(r.MessageID),
		LatestVersion:  int(r.LatestVersion),
		CreateTime:     r.CreateTime,
		UpdateTime:     r.UpdateTime,
	}
}

func optionalInt32(n int) *int32 {
	if n == 0 {
		return nil
	}
	v := int32(n)
	return &v
}

// CreateArtifact implements artifact.Store in one statement, plus a lookup
// when a retried request id or a missing link saved nothing.
func (s *Store) CreateArtifact(ctx context.Context, userID uuid.UUID, a artifact.NewArtifact) (artifact.Artifact, artifact.Version, error) {
	row, err := s.q.CreateArtifact(ctx, sqlcgen.CreateArtifactParams{
		ConversationID: nonNil(a.ConversationID),
		UserID:         userID,
		MessageID:      nonNil(a.MessageID),
		Title:          a.Title,
		Kind:           string(a.Kind),
		Language:       a.Language,
		Content:        a.Content,
		RequestID:      nonEmpty(a.RequestID),
		Author:         string(a.Author),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return s.createdBefore(ctx, userID, a)
	}
	if err != nil {
		return artifact.Artifact{}, artifact.Version{}, interpretError(err, "artifact")
	}
	out := toArtifact(artifactRow{
		ID: row.ID, UserID: row.UserID, Title: row.Title, Kind: row.Kind, Language: row.Language, LatestVersion: row.LatestVersion,
		ConversationID: row.ConversationID, MessageID: row.MessageID, CreateTime: row.CreateTime, UpdateTime: row.UpdateTime,
	})
	return out, artifact.Version{
		ArtifactID: out.ID, Number: 1, Title: out.Title, Content: a.Content, ContentBytes: len(a.Content),
		Author: artifact.Author(row.Author), ConversationID: out.ConversationID, MessageID: out.MessageID, CreateTime: out.CreateTime,
	}, nil
}

// createdBefore explains a create that saved nothing: its request id was
// used (the first artifact is the answer), or its conversation or message
// is not the user's.
func (s *Store) createdBefore(ctx context.Context, userID uuid.UUID, a artifact.NewArtifact) (artifact.Artifact, artifact.Version, error) {
	if a.RequestID != "" {
		id, err := s.q.GetArtifactIDByRequestID(ctx, sqlcgen.GetArtifactIDByRequestIDParams{UserID: userID, RequestID: &a.RequestID})
		if err == nil {
			return s.GetArtifact(ctx, userID, id, 0)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return artifact.Artifact{}, artifact.Version{}, interpretError(err, "artifact")
		}
	}
	if _, err := s.q.GetConversation(ctx, sqlcgen.GetConversationParams{ID: a.ConversationID, UserID: userID}); err != nil {
		return artifact.Artifact{}, artifact.Version{}, interpretError(err, "conversation")
	}
	return artifact.Artifact{}, artifact.Version{}, apperr.New(apperr.NotFound, "message not found in that conversation")
}

// GetArtifact implements artifact.Store.
func (s *Store) GetArtifact(ctx context.Context, userID, artifactID uuid.UUID, version int) (artifact.Artifact, artifact.Version, error) {
	row, err := s.q.GetArtifact(ctx, sqlcgen.GetArtifactParams{ID: artifactID, UserID: userID, Version: optionalInt32(version)})
	if err != nil {
		return artifact.Artifact{}, artifact.Version{}, interpretError(err, "artifact")
	}
	a := toArtifact(artifactRow{
		ID: row.ID, UserID: row.UserID, Title: row.Title, Kind: row.Kind, Language: row.Language, LatestVersion: row.LatestVersion,
		ConversationID: row.ConversationID, MessageID: row.MessageID, CreateTime: row.CreateTime, UpdateTime: row.UpdateTime,
	})
	return a, artifact.Version{
		ArtifactID: a.ID, Number: int(row.Version), Title: row.VersionTitle, Content: row.Content, ContentBytes: len(row.Content),
		Author: artifact.Author(row.Author), ConversationID: deref(row.VersionConversationID), MessageID: deref(row.VersionMessageID),
		CreateTime: row.VersionCreateTime,
	}, nil
}

// GetHead implements artifact.Store.
func (s *Store) GetHead(ctx context.Context, userID, artifactID uuid.UUID) (artifact.Artifact, error) {
	row, err := s.q.GetArtifactHead(ctx, sqlcgen.GetArtifactHeadParams{ID: artifactID, UserID: userID})
	if err != nil {
		return artifact.Artifact{}, interpretError(err, "artifact")
	}
	return toArtifact(row), nil
}

// ListArtifacts implements artifact.Store: one conversation's on that
// conversation's index, all of them on the user's.
func (s *Store) ListArtifacts(ctx context.Context, userID uuid.UUID, f artifact.Filter, after *artifact.Cursor, limit int) ([]artifact.Artifact, error) {
	var kind *string
	if f.Kind != "" {
		k := string(f.Kind)
		kind = &k
	}
	var afterTime *time.Time
	var afterID *uuid.UUID
	if after != nil {
		afterTime, afterID = &after.Time, &after.ID
	}
	var rows []artifactRow
	if f.ConversationID != uuid.Nil {
		found, err := s.q.ListConversationArtifacts(ctx, sqlcgen.ListConversationArtifactsParams{
			ConversationID: &f.ConversationID, UserID: userID, Kind: kind, AfterTime: afterTime, AfterID: afterID, PageLimit: int32(limit),
		})
		if err != nil {
			return nil, interpretError(err, "artifacts")
		}
		for _, r := range found {
			rows = append(rows, artifactRow(r))
		}
	} else {
		found, err := s.q.ListArtifacts(ctx, sqlcgen.ListArtifactsParams{
			UserID: userID, Kind: kind, AfterTime: afterTime, AfterID: afterID, PageLimit: int32(limit),
		})
		if err != nil {
			return nil, interpretError(err, "artifacts")
		}
		for _, r := range found {
			rows = append(rows, artifactRow(r))
		}
	}
	out := make([]artifact.Artifact, len(rows))
	for i, r := range rows {
		out[i] = toArtifact(r)
	}
	return out, nil
}

// AddVersion implements artifact.Store in one statement, plus a lookup
// that tells a version conflict from an absent artifact when it saved
// nothing.
func (s *Store) AddVersion(ctx context.Context, userID uuid.UUID, e artifact.Edit) (artifact.Artifact, artifact.Version, error) {
	row, err := s.q.AddArtifactVersion(ctx, sqlcgen.AddArtifactVersionParams{
		ConversationID: nonNil(e.ConversationID),
		UserID:         userID,
		MessageID:      nonNil(e.MessageID),
		Title:          e.Title,
		Content:        e.Content,
		ID:             e.ArtifactID,
		BaseVersion:    optionalInt32(e.BaseVersion),
		Author:         string(e.Author),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		head, headErr := s.GetHead(ctx, userID, e.ArtifactID)
		if headErr != nil {
			return artifact.Artifact{}, artifact.Version{}, headErr
		}
		return artifact.Artifact{}, artifact.Version{}, artifact.Conflict(e.BaseVersion, head.LatestVersion)
	}
	if err != nil {
		return artifact.Artifact{}, artifact.Version{}, interpretError(err, "artifact")
	}
	a := toArtifact(artifactRow{
		ID: row.ID, UserID: row.UserID, Title: row.Title, Kind: row.Kind, Language: row.Language, LatestVersion: row.LatestVersion,
		ConversationID: row.ConversationID, MessageID: row.MessageID, CreateTime: row.CreateTime, UpdateTime: row.UpdateTime,
	})
	return a, artifact.Version{
		ArtifactID: a.ID, Number: a.LatestVersion, Title: a.Title, Content: e.Content, ContentBytes: len(e.Content),
		Author: e.Author, ConversationID: deref(row.VersionConversationID), MessageID: deref(row.VersionMessageID), CreateTime: a.UpdateTime,
	}, nil
}

// ListVersions implements artifact.Store. Every artifact has a version
// 1, so an empty first page means there is no such artifact of the user's.
func (s *Store) ListVersions(ctx context.Context, userID, artifactID uuid.UUID, beforeVersion, limit int) ([]artifact.Version, error) {
	rows, err := s.q.ListArtifactVersions(ctx, sqlcgen.ListArtifactVersionsParams{
		ArtifactID: artifactID, UserID: userID, BeforeVersion: optionalInt32(beforeVersion), PageLimit: int32(limit),
	})
	if err != nil {
		return nil, interpretError(err, "artifact versions")
	}
	if len(rows) == 0 && beforeVersion == 0 {
		return nil, apperr.New(apperr.NotFound, "artifact not found")
	}
	out := make([]artifact.Version, len(rows))
	for i, r := range rows {
		out[i] = artifact.Version{
			ArtifactID: r.ArtifactID, Number: int(r.Version), Title: r.Title, ContentBytes: int(r.ContentBytes),
			Author: artifact.Author(r.Author), ConversationID: deref(r.ConversationID), MessageID: deref(r.MessageID), CreateTime: r.CreateTime,
		}
	}
	return out, nil
}

// DeleteArtifact implements artifact.Store.
func (s *Store) DeleteArtifact(ctx context.Context, userID, artifactID uuid.UUID) error {
	n, err := s.q.DeleteArtifact(ctx, sqlcgen.DeleteArtifactParams{ID: artifactID, UserID: userID})
	if err != nil {
		return interpretError(err, "artifact")
	}
	if n == 0 {
		return apperr.New(apperr.NotFound, "artifact not found")
	}
	return nil
}

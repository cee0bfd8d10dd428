package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/share"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

func toShare(r sqlcgen.ListSharesRow) share.Share {
	return share.Share{
		ID: r.ID, ConversationID: r.ConversationID, Title: r.Title, IncludeSystemPrompt: r.IncludeSystemPrompt,
		MessageCount: int(r.MessageCount), CreateTime: r.CreateTime,
	}
}

// ArtifactVersions implements share.Store.
func (s *Store) ArtifactVersions(ctx context.Context, userID uuid.UUID, keys []share.VersionKey) ([]share.Artifact, error) {
	arg := sqlcgen.GetShareArtifactVersionsParams{UserID: userID}
	for _, k := range keys {
		arg.ArtifactIds = append(arg.ArtifactIds, k.ID)
		arg.Keys = append(arg.Keys, k.ID.String()+":"+strconv.Itoa(k.Version))
	}
	rows, err := s.q.GetShareArtifactVersions(ctx, arg)
	if err != nil {
		return nil, interpretError(err, "artifacts")
	}
	out := make([]share.Artifact, len(rows))
	for i, r := range rows {
		out[i] = share.Artifact{ID: r.ArtifactID, Version: int(r.Version), Title: r.Title, Kind: r.Kind, Language: r.Language, Content: r.Content}
	}
	return out, nil
}

// InsertShare implements share.Store.
func (s *Store) InsertShare(ctx context.Context, userID uuid.UUID, n share.NewShare) (share.Share, error) {
	doc, err := json.Marshal(n.Snapshot)
	if err != nil {
		return share.Share{}, fmt.Errorf("store: encode snapshot: %w", err)
	}
	row, err := s.q.InsertShare(ctx, sqlcgen.InsertShareParams{
		ID: n.ID, UserID: userID, ConversationID: n.ConversationID, Title: n.Snapshot.Title,
		IncludeSystemPrompt: n.IncludeSystemPrompt, MessageCount: int32(len(n.Snapshot.Messages)), Snapshot: doc,
	})
	if err != nil {
		return share.Share{}, interpretError(err, "conversation")
	}
	return toShare(sqlcgen.ListSharesRow(row)), nil
}

// CountShares implements share.Store.
func (s *Store) CountShares(ctx context.Context, userID, conversationID uuid.UUID) (int, error) {
	n, err := s.q.CountShares(ctx, sqlcgen.CountSharesParams{ConversationID: conversationID, UserID: userID})
	return int(n), interpretError(err, "shares")
}

// GetSnapshot implements share.Store.
func (s *Store) GetSnapshot(ctx context.Context, shareID string) (share.Snapshot, error) {
	row, err := s.q.GetShare(ctx, shareID)
	if err != nil {
		return share.Snapshot{}, interpretError(err, "share")
	}
	var snap share.Snapshot
	if err := json.Unmarshal(row.Snapshot, &snap); err != nil {
		return share.Snapshot{}, fmt.Errorf("store: decode snapshot: %w", err)
	}
	snap.CreateTime = row.CreateTime
	return snap, nil
}

// ListShares implements share.Store.
func (s *Store) ListShares(ctx context.Context, userID, conversationID uuid.UUID, after *share.Cursor, limit int) ([]share.Share, error) {
	arg := sqlcgen.ListSharesParams{UserID: userID, ConversationID: nonNil(conversationID), PageLimit: int32(limit)}
	if after != nil {
		arg.AfterTime, arg.AfterID = &after.Time, &after.ID
	}
	rows, err := s.q.ListShares(ctx, arg)
	if err != nil {
		return nil, interpretError(err, "shares")
	}
	out := make([]share.Share, len(rows))
	for i, r := range rows {
		out[i] = toShare(r)
	}
	return out, nil
}

// DeleteShare implements share.Store.
func (s *Store) DeleteShare(ctx context.Context, userID uuid.UUID, shareID string) error {
	n, err := s.q.DeleteShare(ctx, sqlcgen.DeleteShareParams{ID: shareID, UserID: userID})
	if err != nil {
		return interpretError(err, "share")
	}
	if n == 0 {
		return apperr.New(apperr.NotFound, "share not found")
	}
	return nil
}

package share

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/pagetoken"
)

// Share ids are IDBytes random bytes in base64url without padding.
const (
	IDBytes  = 32
	IDLength = 43 // base64.RawURLEncoding.EncodedLen(IDBytes)
)

// Limits of ListShares' pages.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// Service applies the share rules on top of a Store.
type Service struct{ store Store }

// NewService returns a Service on store.
func NewService(store Store) *Service { return &Service{store: store} }

// newID returns a fresh share id: 256 bits from the system's CSPRNG, so an
// id can be neither guessed nor enumerated.
func newID() string {
	b := make([]byte, IDBytes)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CheckID returns apperr Invalid, naming field, unless id has the form of a
// share id. A well-formed id that is not a share is NotFound later.
func CheckID(field, id string) error {
	if id == "" {
		return apperr.InvalidField(field, "is required")
	}
	if len(id) != IDLength {
		return apperr.InvalidField(field, "must be a share id of %d URL-safe characters, got %d characters", IDLength, len(id))
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(id); err != nil {
		return apperr.InvalidField(field, "must be a share id of %d URL-safe characters (A-Z, a-z, 0-9, - and _)", IDLength)
	}
	return nil
}

// MaxSharesPerConversation bounds a conversation's live shares.
const MaxSharesPerConversation = 20

// Create takes a snapshot of the conversation's active branch now and
// saves it under a new id. It returns apperr NotFound unless the user owns
// the conversation, and FailedPrecondition for a branch too large to share
// (MaxMessages, MaxSnapshotBytes) or a conversation with
// MaxSharesPerConversation live shares.
func (s *Service) Create(ctx context.Context, userID, conversationID uuid.UUID, includeSystemPrompt bool) (Share, error) {
	conv, err := s.store.GetConversation(ctx, userID, conversationID)
	if err != nil {
		return Share{}, err
	}
	// Each share stores a whole snapshot: a bound keeps one conversation
	// from filling the database (a race may pass it by a few).
	if n, err := s.store.CountShares(ctx, userID, conversationID); err != nil {
		return Share{}, err
	} else if n >= MaxSharesPerConversation {
		return Share{}, apperr.New(apperr.FailedPrecondition, "the conversation already has %d live shares, the most it may have; revoke one (ListShares, RevokeShare) to share it again", n)
	}
	branch, err := s.store.ListMessages(ctx, userID, conversationID, uuid.Nil, nil, MaxMessages+1)
	if err != nil {
		return Share{}, err
	}
	if len(branch) > MaxMessages {
		return Share{}, apperr.New(apperr.FailedPrecondition, "the conversation's branch has more than %d messages: too long to share", MaxMessages)
	}
	snap, keys := build(conv, branch, includeSystemPrompt)
	if len(keys) > 0 {
		found, err := s.store.ArtifactVersions(ctx, userID, keys)
		if err != nil {
			return Share{}, err
		}
		attach(&snap, keys, found)
	}
	if n := snap.size(); n > MaxSnapshotBytes {
		return Share{}, apperr.New(apperr.FailedPrecondition, "the conversation holds %d bytes of text and artifacts: more than the %d a share may hold", n, MaxSnapshotBytes)
	}
	return s.store.InsertShare(ctx, userID, NewShare{ID: newID(), ConversationID: conversationID, IncludeSystemPrompt: includeSystemPrompt, Snapshot: snap})
}

// Get returns a share's snapshot to anyone. It returns apperr Invalid for
// an id that is not one, NotFound for an unknown or revoked share.
func (s *Service) Get(ctx context.Context, shareID string) (Snapshot, error) {
	if err := CheckID("share_id", shareID); err != nil {
		return Snapshot{}, err
	}
	return s.store.GetSnapshot(ctx, shareID)
}

// List returns a page of the user's shares (of one conversation unless
// conversationID is uuid.Nil), newest first, and the next page's token. It
// returns apperr Invalid for a bad page size or token.
func (s *Service) List(ctx context.Context, userID, conversationID uuid.UUID, pageSize int, pageToken string) ([]Share, string, error) {
	switch {
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize < 0 || pageSize > MaxPageSize:
		return nil, "", apperr.InvalidField("page_size", "must be between 1 and %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, pageSize)
	}
	scope := append(userID[:], conversationID[:]...)
	raw, err := pagetoken.Decode("shares", scope, pageToken, cursorBytes)
	if err != nil {
		return nil, "", err
	}
	var after *Cursor
	if raw != nil {
		after = &Cursor{Time: time.UnixMicro(int64(binary.BigEndian.Uint64(raw[:8]))).UTC(), ID: string(raw[8:])}
	}
	items, err := s.store.ListShares(ctx, userID, conversationID, after, pageSize+1)
	if err != nil {
		return nil, "", err
	}
	if len(items) <= pageSize {
		return items, "", nil
	}
	items = items[:pageSize]
	last := items[pageSize-1]
	cursor := binary.BigEndian.AppendUint64(make([]byte, 0, cursorBytes), uint64(last.CreateTime.UnixMicro()))
	return items, pagetoken.Encode("shares", scope, append(cursor, last.ID...)), nil
}

// cursorBytes is the size of an encoded Cursor.
const cursorBytes = 8 + IDLength

// Revoke deletes one of the user's shares. It returns apperr Invalid for
// an id that is not one, NotFound for a share that is not the user's.
func (s *Service) Revoke(ctx context.Context, userID uuid.UUID, shareID string) error {
	if err := CheckID("share_id", shareID); err != nil {
		return err
	}
	return s.store.DeleteShare(ctx, userID, shareID)
}

package share_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/share"
)

// fakeStore is an in-memory share.Store holding one conversation and its
// branch; it keeps the last share saved.
type fakeStore struct {
	owner    uuid.UUID
	conv     chat.Conversation
	branch   []chat.Message
	versions []share.Artifact
	saved    share.NewShare
	shares   int // how many InsertShare saved
}

func (f *fakeStore) CountShares(context.Context, uuid.UUID, uuid.UUID) (int, error) {
	return f.shares, nil
}

func (f *fakeStore) GetConversation(_ context.Context, userID, id uuid.UUID) (chat.Conversation, error) {
	if userID != f.owner || id != f.conv.ID {
		return chat.Conversation{}, apperr.New(apperr.NotFound, "conversation not found")
	}
	return f.conv, nil
}

func (f *fakeStore) ListMessages(_ context.Context, _, _, _ uuid.UUID, _ *chat.Cursor, limit int) ([]chat.Message, error) {
	return f.branch[:min(limit, len(f.branch))], nil
}

func (f *fakeStore) ArtifactVersions(_ context.Context, _ uuid.UUID, keys []share.VersionKey) ([]share.Artifact, error) {
	var out []share.Artifact
	for _, a := range f.versions {
		for _, k := range keys {
			if k.ID == a.ID && k.Version == a.Version {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

func (f *fakeStore) InsertShare(_ context.Context, _ uuid.UUID, s share.NewShare) (share.Share, error) {
	f.saved = s
	f.shares++
	return share.Share{ID: s.ID, ConversationID: s.ConversationID, MessageCount: len(s.Snapshot.Messages)}, nil
}

func (f *fakeStore) GetSnapshot(context.Context, string) (share.Snapshot, error) {
	return f.saved.Snapshot, nil
}

func (f *fakeStore) ListShares(context.Context, uuid.UUID, uuid.UUID, *share.Cursor, int) ([]share.Share, error) {
	return nil, nil
}

func (f *fakeStore) DeleteShare(context.Context, uuid.UUID, string) error { return nil }

// TestCreateSnapshotRules: the snapshot keeps the user's and the
// assistant's finished messages and the artifact versions they wrote that
// still exist, and leaves out the system prompt and system messages unless
// asked, answers still streaming, failed tool calls and vanished versions.
func TestCreateSnapshotRules(t *testing.T) {
	t.Parallel()
	kept, gone := uuid.New(), uuid.New()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	calls := []chat.ToolUse{
		{ID: "1", Name: "create_artifact", Artifact: &chat.ArtifactRef{ID: kept, Version: 2, Title: "Plan", Kind: "text"}},
		{ID: "2", Name: "create_artifact", Artifact: &chat.ArtifactRef{ID: gone, Version: 1, Title: "Gone", Kind: "text"}},
		{ID: "3", Name: "update_artifact", IsError: true, Artifact: &chat.ArtifactRef{ID: kept, Version: 3}},
	}
	f := &fakeStore{
		owner: uuid.New(),
		conv:  chat.Conversation{ID: uuid.New(), Title: "T", SystemPrompt: "hidden"},
		branch: []chat.Message{
			{Role: chat.RoleSystem, Content: "system text", Status: chat.StatusCompleted, CreateTime: now},
			{Role: chat.RoleUser, Content: "q", Status: chat.StatusCompleted, CreateTime: now},
			{Role: chat.RoleAssistant, Content: "a", Model: "m", Status: chat.StatusStopped, CreateTime: now, ToolRounds: []chat.ToolRound{{Calls: calls}}},
			{Role: chat.RoleUser, Content: "q2", Status: chat.StatusCompleted, CreateTime: now},
			{Role: chat.RoleAssistant, Content: "partial", Status: chat.StatusStreaming, CreateTime: now},
		},
		versions: []share.Artifact{{ID: kept, Version: 2, Title: "Plan", Kind: "text", Content: "v2"}},
	}
	svc := share.NewService(f)
	tests := []struct {
		name   string
		system bool
		want   share.Snapshot
	}{
		{"WithoutSystemPrompt", false, share.Snapshot{Title: "T", Messages: []share.Message{
			{Role: chat.RoleUser, Content: "q", CreateTime: now},
			{Role: chat.RoleAssistant, Content: "a", Model: "m", CreateTime: now, Artifacts: []share.ArtifactRef{{ID: kept, Version: 2, Title: "Plan", Kind: "text"}}},
			{Role: chat.RoleUser, Content: "q2", CreateTime: now},
		}, Artifacts: f.versions}},
		{"WithSystemPrompt", true, share.Snapshot{Title: "T", SystemPrompt: "hidden", Messages: []share.Message{
			{Role: chat.RoleSystem, Content: "system text", CreateTime: now},
			{Role: chat.RoleUser, Content: "q", CreateTime: now},
			{Role: chat.RoleAssistant, Content: "a", Model: "m", CreateTime: now, Artifacts: []share.ArtifactRef{{ID: kept, Version: 2, Title: "Plan", Kind: "text"}}},
			{Role: chat.RoleUser, Content: "q2", CreateTime: now},
		}, Artifacts: f.versions}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := svc.Create(t.Context(), f.owner, f.conv.ID, tt.system)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, f.saved.Snapshot); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
			if err := share.CheckID("id", s.ID); err != nil {
				t.Errorf("new id %q: %v", s.ID, err)
			}
		})
	}
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := svc.Create(t.Context(), uuid.New(), f.conv.ID, false); apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("another user's conversation: %v", err)
		}
	})
	t.Run("ErrTooLong", func(t *testing.T) {
		long := &fakeStore{owner: f.owner, conv: f.conv, branch: make([]chat.Message, share.MaxMessages+1)}
		if _, err := share.NewService(long).Create(t.Context(), f.owner, f.conv.ID, false); apperr.CodeOf(err) != apperr.FailedPrecondition {
			t.Errorf("a branch of %d messages: %v", share.MaxMessages+1, err)
		}
		big := &fakeStore{owner: f.owner, conv: f.conv, branch: []chat.Message{
			{Role: chat.RoleUser, Content: strings.Repeat("x", share.MaxSnapshotBytes+1), Status: chat.StatusCompleted},
		}}
		if _, err := share.NewService(big).Create(t.Context(), f.owner, f.conv.ID, false); apperr.CodeOf(err) != apperr.FailedPrecondition {
			t.Errorf("a branch of more than %d bytes: %v", share.MaxSnapshotBytes, err)
		}
	})
}

// TestIDs: new ids are distinct and well formed; CheckID refuses what is
// not an id, naming the field.
func TestIDs(t *testing.T) {
	t.Parallel()
	f := &fakeStore{owner: uuid.New(), conv: chat.Conversation{ID: uuid.New()}}
	svc := share.NewService(f)
	seen := map[string]bool{}
	for range 100 {
		f.shares = 0 // as if revoked: TestSharesPerConversationBounded tests the cap
		s, err := svc.Create(t.Context(), f.owner, f.conv.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if seen[s.ID] || len(s.ID) != share.IDLength {
			t.Fatalf("id %q repeated or not %d characters", s.ID, share.IDLength)
		}
		seen[s.ID] = true
	}
	for _, bad := range []string{"", "short", strings.Repeat("+", share.IDLength), strings.Repeat("A", share.IDLength-1) + "=", strings.Repeat("A", share.IDLength+1)} {
		err := share.CheckID("share_id", bad)
		var ae *apperr.Error
		if !errors.As(err, &ae) || ae.Code != apperr.Invalid || ae.Field != "share_id" {
			t.Errorf("CheckID(%q) = %v; want Invalid naming share_id", bad, err)
		}
	}
}

// TestSharesPerConversationBounded: every share stores a whole snapshot,
// so a conversation may have at most MaxSharesPerConversation live ones.
func TestSharesPerConversationBounded(t *testing.T) {
	f := &fakeStore{owner: uuid.New(), conv: chat.Conversation{ID: uuid.New(), Title: "T"}}
	svc := share.NewService(f)
	for i := range share.MaxSharesPerConversation {
		if _, err := svc.Create(t.Context(), f.owner, f.conv.ID, false); err != nil {
			t.Fatalf("share %d: %v", i+1, err)
		}
	}
	_, err := svc.Create(t.Context(), f.owner, f.conv.ID, false)
	if apperr.CodeOf(err) != apperr.FailedPrecondition || !strings.Contains(err.Error(), "revoke one") {
		t.Errorf("share %d: %v, want failed_precondition saying to revoke one", share.MaxSharesPerConversation+1, err)
	}
}

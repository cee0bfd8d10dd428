package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// createArtifact creates an artifact or fails the test.
func createArtifact(tb testing.TB, c parleyv1connect.ArtifactServiceClient, req *parleyv1.CreateArtifactRequest) (*parleyv1.Artifact, *parleyv1.ArtifactVersion) {
	tb.Helper()
	res, err := c.CreateArtifact(context.Background(), connect.NewRequest(req))
	if err != nil {
		tb.Fatal(err)
	}
	return res.Msg.Artifact, res.Msg.Version
}

// updateArtifact saves a new version or fails the test.
func updateArtifact(tb testing.TB, c parleyv1connect.ArtifactServiceClient, id string, base int32, content string) *parleyv1.UpdateArtifactResponse {
	tb.Helper()
	res, err := c.UpdateArtifact(context.Background(), connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: id, BaseVersion: base, Content: content}))
	if err != nil {
		tb.Fatal(err)
	}
	return res.Msg
}

// seedMessage saves a finished user message in a conversation of user's,
// as a chat turn would.
func seedMessage(tb testing.TB, env *apitest.Env, user uuid.UUID, convID, content string) chat.Message {
	tb.Helper()
	m, err := env.Store.InsertMessage(context.Background(), user, chat.Message{
		ConversationID: uuid.MustParse(convID), Role: chat.RoleUser, Content: content, Status: chat.StatusCompleted,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestArtifactLifecycle runs every ArtifactService RPC over every protocol:
// create, get, list, update, get an old version, list versions, restore,
// delete.
func TestArtifactLifecycle(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			user := uuid.New()
			c := env.ArtifactClient(t, protocol, user)
			conv := create(t, env.ChatClient(t, protocol, user), "with an artifact")
			msg := seedMessage(t, env, user, conv.Id, "write me a program")

			a, v1 := createArtifact(t, c, &parleyv1.CreateArtifactRequest{
				Title: "hello.go", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_CODE, Language: "go",
				Content: "package main\n", ConversationId: conv.Id, MessageId: msg.ID.String(),
			})
			if _, err := uuid.Parse(a.Id); err != nil || a.Title != "hello.go" || a.Kind != parleyv1.ArtifactKind_ARTIFACT_KIND_CODE || a.Language != "go" ||
				a.ConversationId != conv.Id || a.MessageId != msg.ID.String() || a.LatestVersion != 1 || a.CreateTime == nil {
				t.Fatalf("created %v", a)
			}
			if v1.Version != 1 || v1.Content != "package main\n" || v1.ContentBytes != 13 || v1.Author != parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_USER ||
				v1.ArtifactId != a.Id || v1.ConversationId != conv.Id || v1.MessageId != msg.ID.String() {
				t.Fatalf("version 1 = %v", v1)
			}

			got, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id}))
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got.Msg.Artifact, a) || !proto.Equal(got.Msg.Version, v1) {
				t.Errorf("get = %v %v, want %v %v", got.Msg.Artifact, got.Msg.Version, a, v1)
			}

			title := "main.go"
			up, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{
				ArtifactId: a.Id, BaseVersion: 1, Content: "package main\n\nfunc main() {}\n", Title: &title,
			}))
			if err != nil {
				t.Fatal(err)
			}
			if up.Msg.Artifact.LatestVersion != 2 || up.Msg.Artifact.Title != "main.go" || up.Msg.Version.Version != 2 ||
				up.Msg.Version.Content != "package main\n\nfunc main() {}\n" || up.Msg.Version.Title != "main.go" ||
				up.Msg.Version.Author != parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_USER ||
				!up.Msg.Artifact.UpdateTime.AsTime().After(a.UpdateTime.AsTime()) {
				t.Errorf("update = %v", up.Msg)
			}
			// The link says where the artifact came from; updates keep it.
			if up.Msg.Artifact.ConversationId != conv.Id || up.Msg.Artifact.MessageId != msg.ID.String() {
				t.Errorf("update moved the artifact: %v", up.Msg.Artifact)
			}

			old, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id, Version: 1}))
			if err != nil {
				t.Fatal(err)
			}
			if old.Msg.Version.Content != "package main\n" || old.Msg.Version.Title != "hello.go" || old.Msg.Artifact.LatestVersion != 2 {
				t.Errorf("get version 1 = %v", old.Msg)
			}

			list, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Msg.Artifacts) != 1 || !proto.Equal(list.Msg.Artifacts[0], up.Msg.Artifact) || list.Msg.NextPageToken != "" {
				t.Errorf("list = %v", list.Msg)
			}

			restored, err := c.RestoreArtifactVersion(ctx, connect.NewRequest(&parleyv1.RestoreArtifactVersionRequest{ArtifactId: a.Id, Version: 1, BaseVersion: 2}))
			if err != nil {
				t.Fatal(err)
			}
			if r := restored.Msg; r.Version.Version != 3 || r.Version.Content != "package main\n" || r.Version.Title != "hello.go" ||
				r.Artifact.LatestVersion != 3 || r.Artifact.Title != "hello.go" || r.Version.Author != parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_USER {
				t.Errorf("restore = %v", r)
			}

			versions, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: a.Id}))
			if err != nil {
				t.Fatal(err)
			}
			var numbers []int32
			for _, v := range versions.Msg.Versions {
				numbers = append(numbers, v.Version)
				if v.Content != "" || v.ContentBytes == 0 || v.ArtifactId != a.Id || v.CreateTime == nil {
					t.Errorf("listed version %v: want its size, not its content", v)
				}
			}
			if diff := cmp.Diff([]int32{3, 2, 1}, numbers); diff != "" {
				t.Errorf("versions, newest first (-want +got):\n%s", diff)
			}

			if _, err := c.DeleteArtifact(ctx, connect.NewRequest(&parleyv1.DeleteArtifactRequest{ArtifactId: a.Id})); err != nil {
				t.Fatal(err)
			}
			_, err = c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id}))
			wantCode(t, err, connect.CodeNotFound, "artifact not found")
			_, err = c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: a.Id}))
			wantCode(t, err, connect.CodeNotFound, "artifact not found")
			_, err = c.DeleteArtifact(ctx, connect.NewRequest(&parleyv1.DeleteArtifactRequest{ArtifactId: a.Id}))
			wantCode(t, err, connect.CodeNotFound, "")
		})
	}
}

// TestArtifactVersionConflict: an update or a restore based on a version
// that is no longer the latest answers aborted and saves nothing, over
// every protocol; of concurrent updates from the same base exactly one wins.
func TestArtifactVersionConflict(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			c := env.ArtifactClient(t, protocol, uuid.New())
			a, _ := createArtifact(t, c, &parleyv1.CreateArtifactRequest{Title: "draft", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "one"})
			updateArtifact(t, c, a.Id, 1, "two (first tab)")

			// The second tab still has version 1.
			_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: a.Id, BaseVersion: 1, Content: "two (second tab)"}))
			wantCode(t, err, connect.CodeAborted, "the artifact is at version 2, not base_version 1")
			_, err = c.RestoreArtifactVersion(ctx, connect.NewRequest(&parleyv1.RestoreArtifactVersionRequest{ArtifactId: a.Id, Version: 1, BaseVersion: 1}))
			wantCode(t, err, connect.CodeAborted, "send base_version 2")
			// A base version from the future is no better.
			_, err = c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: a.Id, BaseVersion: 9, Content: "x"}))
			wantCode(t, err, connect.CodeAborted, "")
			got, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id}))
			if err != nil {
				t.Fatal(err)
			}
			if got.Msg.Artifact.LatestVersion != 2 || got.Msg.Version.Content != "two (first tab)" {
				t.Fatalf("after the refused writes: %v", got.Msg)
			}
			_, err = c.RestoreArtifactVersion(ctx, connect.NewRequest(&parleyv1.RestoreArtifactVersionRequest{ArtifactId: a.Id, Version: 7, BaseVersion: 2}))
			wantCode(t, err, connect.CodeNotFound, "the artifact has no version 7; its versions are 1 to 2")
			// Reapplied on the version it was refused for, it is saved.
			updateArtifact(t, c, a.Id, 2, "two (second tab, merged)")

			// Concurrent writers from one base: one version 4, the rest aborted.
			const writers = 6
			var wg sync.WaitGroup
			codes := make([]connect.Code, writers)
			for i := range writers {
				wg.Go(func() {
					_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: a.Id, BaseVersion: 3, Content: fmt.Sprint("writer ", i)}))
					if err != nil {
						codes[i] = connect.CodeOf(err)
					}
				})
			}
			wg.Wait()
			var won, aborted int
			for _, code := range codes {
				switch code {
				case 0:
					won++
				case connect.CodeAborted:
					aborted++
				}
			}
			if won != 1 || aborted != writers-1 {
				t.Errorf("concurrent updates from version 3: %v; want one success and %d aborted", codes, writers-1)
			}
			versions, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: a.Id}))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(versions.Msg.Versions); n != 4 {
				t.Errorf("%d versions after the race, want 4", n)
			}
		})
	}
}

func TestCreateArtifactIdempotent(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			c := env.ArtifactClient(t, protocol, uuid.New())
			req := &parleyv1.CreateArtifactRequest{Title: "once", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "first", RequestId: "req-1"}
			first, _ := createArtifact(t, c, req)
			second, v := createArtifact(t, c, req)
			if second.Id != first.Id || v.Version != 1 || v.Content != "first" {
				t.Errorf("retry returned %v %v, want the first artifact %s", second, v, first.Id)
			}
			// A retry after an edit returns the artifact as it is now.
			updateArtifact(t, c, first.Id, 1, "edited")
			third, v := createArtifact(t, c, req)
			if third.Id != first.Id || third.LatestVersion != 2 || v.Content != "edited" {
				t.Errorf("retry after an edit returned %v %v", third, v)
			}
			list, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(list.Msg.Artifacts); n != 1 {
				t.Errorf("%d artifacts after retried creates, want 1", n)
			}
			// The same request id is another user's own.
			other, _ := createArtifact(t, env.ArtifactClient(t, protocol, uuid.New()), req)
			if other.Id == first.Id {
				t.Error("request ids are shared across users")
			}
		})
	}
}

// TestArtifactInvalid: each malformed request answers invalid_argument
// with a message that starts with the field at fault.
func TestArtifactInvalid(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	c := env.ArtifactClient(t, "connect+json", user)
	sheet, _ := createArtifact(t, c, &parleyv1.CreateArtifactRequest{Title: "budget", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_SHEET, Content: "item,cost\nrent,900\n"})
	conv := create(t, env.ChatClient(t, "connect+json", user), "x")
	const text, code, sheetKind = parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, parleyv1.ArtifactKind_ARTIFACT_KIND_CODE, parleyv1.ArtifactKind_ARTIFACT_KIND_SHEET
	createCase := func(r *parleyv1.CreateArtifactRequest) func() error {
		return func() error {
			_, err := c.CreateArtifact(ctx, connect.NewRequest(r))
			return err
		}
	}
	tests := []struct {
		name string
		call func() error
		msg  string
	}{
		{"ErrNoTitle", createCase(&parleyv1.CreateArtifactRequest{Kind: text}), "title: is required"},
		{"ErrTitleTooLong", createCase(&parleyv1.CreateArtifactRequest{Title: strings.Repeat("é", artifact.MaxTitleRunes+1), Kind: text}), "title: must be at most 200 characters"},
		{"ErrNoKind", createCase(&parleyv1.CreateArtifactRequest{Title: "t"}), "kind: is required"},
		{"ErrUnknownKind", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: 7}), "kind: must be ARTIFACT_KIND_TEXT"},
		{"ErrLanguageOnText", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: text, Language: "go"}), "language: is for code artifacts only"},
		{"ErrLanguageOnSheet", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: sheetKind, Language: "csv"}), "language: is for code artifacts only"},
		{"ErrBadLanguage", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: code, Language: "go lang"}), "language: must be at most 32 letters"},
		{"ErrContentTooLong", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: text, Content: strings.Repeat("a", artifact.MaxContentBytes+1)}), "content: must be at most 1048576 bytes"},
		{"ErrSheetNotCSV", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: sheetKind, Content: "a,b\n1,2,3\n"}), "content: a sheet must be CSV"},
		{"ErrSheetBadQuote", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: sheetKind, Content: "a,b\n\"c,d\n"}), "content: a sheet must be CSV"},
		{"ErrMessageWithoutConversation", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: text, MessageId: uuid.NewString()}), "conversation_id: is required with message_id"},
		{"ErrBadConversationID", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: text, ConversationId: "x"}), "conversation_id: must be a UUID"},
		{"ErrBadMessageID", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: text, ConversationId: conv.Id, MessageId: "x"}), "message_id: must be a UUID"},
		{"ErrRequestIDTooLong", createCase(&parleyv1.CreateArtifactRequest{Title: "t", Kind: text, RequestId: strings.Repeat("r", 101)}), "request_id: must be at most 100 bytes"},
		{"ErrGetBadID", func() error {
			_, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: "nope"}))
			return err
		}, "artifact_id: must be a UUID"},
		{"ErrGetNegativeVersion", func() error {
			_, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: sheet.Id, Version: -1}))
			return err
		}, "version: must be a version number"},
		{"ErrListPageSize", func() error {
			_, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{PageSize: 101}))
			return err
		}, "page_size: must be between 1 and 100"},
		{"ErrListPageToken", func() error {
			_, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{PageToken: "abc"}))
			return err
		}, "page_token: is not a page token"},
		{"ErrListUnknownKind", func() error {
			_, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{Kind: 9}))
			return err
		}, "kind: must be ARTIFACT_KIND_TEXT"},
		{"ErrUpdateNoBase", func() error {
			_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: sheet.Id, Content: "a\n"}))
			return err
		}, "base_version: is required"},
		{"ErrUpdateSheetNotCSV", func() error {
			_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: sheet.Id, BaseVersion: 1, Content: "item,cost\nrent\n"}))
			return err
		}, "content: a sheet must be CSV (RFC 4180, every record with as many fields as the first): line 2"},
		{"ErrUpdateEmptyTitle", func() error {
			empty := ""
			_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: sheet.Id, BaseVersion: 1, Content: "a\n", Title: &empty}))
			return err
		}, "title: is required"},
		{"ErrUpdateContentTooLong", func() error {
			_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: sheet.Id, BaseVersion: 1, Content: strings.Repeat("a", artifact.MaxContentBytes+1)}))
			return err
		}, "content: must be at most"},
		{"ErrRestoreNoVersion", func() error {
			_, err := c.RestoreArtifactVersion(ctx, connect.NewRequest(&parleyv1.RestoreArtifactVersionRequest{ArtifactId: sheet.Id, BaseVersion: 1}))
			return err
		}, "version: must be the number of the version to restore"},
		{"ErrRestoreNoBase", func() error {
			_, err := c.RestoreArtifactVersion(ctx, connect.NewRequest(&parleyv1.RestoreArtifactVersionRequest{ArtifactId: sheet.Id, Version: 1}))
			return err
		}, "base_version: must be the version you last read"},
		{"ErrVersionsPageToken", func() error {
			_, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: sheet.Id, PageToken: "AQ"}))
			return err
		}, "page_token: is not a page token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), connect.CodeInvalidArgument, tt.msg)
		})
	}
	// None of them wrote anything.
	list, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Artifacts) != 1 || list.Msg.Artifacts[0].LatestVersion != 1 {
		t.Errorf("after the refused calls: %v", list.Msg.Artifacts)
	}
	// A sheet of exactly 1 MiB of valid CSV is accepted, and so is a text
	// of 1 MiB of two-byte characters.
	row := "aaaaaaa,b\n"
	big := strings.Repeat(row, artifact.MaxContentBytes/len(row)) + "aaaa,b"
	if len(big) != artifact.MaxContentBytes {
		t.Fatalf("the test's sheet has %d bytes", len(big))
	}
	if _, err := c.CreateArtifact(ctx, connect.NewRequest(&parleyv1.CreateArtifactRequest{Title: "big", Kind: sheetKind, Content: big})); err != nil {
		t.Errorf("a 1 MiB sheet: %v", err)
	}
	if _, err := c.CreateArtifact(ctx, connect.NewRequest(&parleyv1.CreateArtifactRequest{Title: "big", Kind: text, Content: strings.Repeat("é", artifact.MaxContentBytes/2)})); err != nil {
		t.Errorf("a 1 MiB text: %v", err)
	}
}

// TestArtifactCrossUser: another user's artifact (and conversation) is
// not_found for every RPC, exactly like an id that does not exist, and is
// never listed.
func TestArtifactCrossUser(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := testCtx(t)
	owner := uuid.New()
	ownerConv := create(t, env.ChatClient(t, "connect+json", owner), "owner's")
	ownerMsg := seedMessage(t, env, owner, ownerConv.Id, "owner's message")
	a, _ := createArtifact(t, env.ArtifactClient(t, "connect+json", owner), &parleyv1.CreateArtifactRequest{
		Title: "mine", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "private", ConversationId: ownerConv.Id, RequestId: "shared-key",
	})
	intruder := uuid.New()
	intruderConv := create(t, env.ChatClient(t, "connect+json", intruder), "intruder's")
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := env.ArtifactClient(t, protocol, intruder)
			for _, id := range []string{a.Id, uuid.NewString()} {
				calls := []struct {
					name string
					call func() error
				}{
					{"GetArtifact", func() error {
						_, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: id}))
						return err
					}},
					{"GetArtifactVersion", func() error {
						_, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: id, Version: 1}))
						return err
					}},
					{"UpdateArtifact", func() error {
						_, err := c.UpdateArtifact(ctx, connect.NewRequest(&parleyv1.UpdateArtifactRequest{ArtifactId: id, BaseVersion: 1, Content: "mine now"}))
						return err
					}},
					{"ListArtifactVersions", func() error {
						_, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: id}))
						return err
					}},
					{"RestoreArtifactVersion", func() error {
						_, err := c.RestoreArtifactVersion(ctx, connect.NewRequest(&parleyv1.RestoreArtifactVersionRequest{ArtifactId: id, Version: 1, BaseVersion: 1}))
						return err
					}},
					{"DeleteArtifact", func() error {
						_, err := c.DeleteArtifact(ctx, connect.NewRequest(&parleyv1.DeleteArtifactRequest{ArtifactId: id}))
						return err
					}},
				}
				for _, tt := range calls {
					wantCode(t, tt.call(), connect.CodeNotFound, "artifact not found")
				}
			}
			// Linking to the owner's conversation or message is not_found too.
			for _, req := range []*parleyv1.CreateArtifactRequest{
				{Title: "t", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, ConversationId: ownerConv.Id},
				{Title: "t", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, ConversationId: intruderConv.Id, MessageId: ownerMsg.ID.String()},
			} {
				_, err := c.CreateArtifact(ctx, connect.NewRequest(req))
				wantCode(t, err, connect.CodeNotFound, "not found")
			}
			// Lists show nothing of the owner's, even filtered by the
			// owner's conversation; the owner's request id is the owner's.
			for _, req := range []*parleyv1.ListArtifactsRequest{{}, {ConversationId: ownerConv.Id}} {
				list, err := c.ListArtifacts(ctx, connect.NewRequest(req))
				if err != nil {
					t.Fatal(err)
				}
				for _, got := range list.Msg.Artifacts {
					if got.Id == a.Id {
						t.Errorf("the intruder lists the owner's artifact")
					}
				}
			}
		})
	}
	// Nothing the intruder did changed it.
	got, err := env.ArtifactClient(t, "grpc", owner).GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Msg.Artifact.LatestVersion != 1 || got.Msg.Version.Content != "private" {
		t.Errorf("the owner's artifact is now %v", got.Msg)
	}
}

// TestDeleteConversationKeepsArtifacts: an artifact is the user's
// document: deleting the conversation it came from keeps it, with all its
// versions, and only drops the links.
func TestDeleteConversationKeepsArtifacts(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			user := uuid.New()
			chatClient, c := env.ChatClient(t, protocol, user), env.ArtifactClient(t, protocol, user)
			conv := create(t, chatClient, "doomed")
			msg := seedMessage(t, env, user, conv.Id, "make a list")
			a, _ := createArtifact(t, c, &parleyv1.CreateArtifactRequest{
				Title: "list", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "- one", ConversationId: conv.Id, MessageId: msg.ID.String(),
			})
			updateArtifact(t, c, a.Id, 1, "- one\n- two")
			if _, err := chatClient.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id})); err != nil {
				t.Fatal(err)
			}
			got, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id}))
			if err != nil {
				t.Fatalf("the artifact went with its conversation: %v", err)
			}
			if got.Msg.Artifact.ConversationId != "" || got.Msg.Artifact.MessageId != "" || got.Msg.Artifact.LatestVersion != 2 || got.Msg.Version.Content != "- one\n- two" {
				t.Errorf("after the conversation's delete: %v", got.Msg)
			}
			versions, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: a.Id}))
			if err != nil {
				t.Fatal(err)
			}
			if len(versions.Msg.Versions) != 2 {
				t.Fatalf("%d versions left, want 2", len(versions.Msg.Versions))
			}
			for _, v := range versions.Msg.Versions {
				if v.ConversationId != "" || v.MessageId != "" {
					t.Errorf("version %d still links %q, %q", v.Version, v.ConversationId, v.MessageId)
				}
			}
			list, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{ConversationId: conv.Id}))
			if err != nil || len(list.Msg.Artifacts) != 0 {
				t.Errorf("the deleted conversation still lists %v (%v)", list, err)
			}
		})
	}
}

// TestListArtifactsPages: pages cover every artifact once, newest update
// first; the conversation and kind filters narrow them, and a token of one
// filter does not page another.
func TestListArtifactsPages(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			user := uuid.New()
			c := env.ArtifactClient(t, protocol, user)
			conv := create(t, env.ChatClient(t, protocol, user), "filtered")
			var all, inConv, code []string // newest first
			for i := range 7 {
				req := &parleyv1.CreateArtifactRequest{Title: fmt.Sprint("a", i), Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT}
				if i%2 == 0 {
					req.ConversationId = conv.Id
				}
				if i%3 == 0 {
					req.Kind = parleyv1.ArtifactKind_ARTIFACT_KIND_CODE
				}
				a, _ := createArtifact(t, c, req)
				all = append([]string{a.Id}, all...)
				if i%2 == 0 {
					inConv = append([]string{a.Id}, inConv...)
				}
				if i%3 == 0 && i%2 == 0 {
					code = append([]string{a.Id}, code...)
				}
			}
			pages := func(req *parleyv1.ListArtifactsRequest) []string {
				t.Helper()
				var got []string
				for page := 0; ; page++ {
					if page > 10 {
						t.Fatal("pagination does not end")
					}
					res, err := c.ListArtifacts(ctx, connect.NewRequest(req))
					if err != nil {
						t.Fatal(err)
					}
					if len(res.Msg.Artifacts) > int(req.PageSize) {
						t.Fatalf("page of %d, want at most %d", len(res.Msg.Artifacts), req.PageSize)
					}
					for _, a := range res.Msg.Artifacts {
						got = append(got, a.Id)
					}
					if req.PageToken = res.Msg.NextPageToken; req.PageToken == "" {
						return got
					}
				}
			}
			if diff := cmp.Diff(all, pages(&parleyv1.ListArtifactsRequest{PageSize: 3})); diff != "" {
				t.Errorf("all (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(inConv, pages(&parleyv1.ListArtifactsRequest{PageSize: 2, ConversationId: conv.Id})); diff != "" {
				t.Errorf("in the conversation (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(code, pages(&parleyv1.ListArtifactsRequest{PageSize: 1, ConversationId: conv.Id, Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_CODE})); diff != "" {
				t.Errorf("code in the conversation (-want +got):\n%s", diff)
			}
			// Updating an artifact moves it to the front.
			updateArtifact(t, c, all[len(all)-1], 1, "bumped")
			first, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{PageSize: 1}))
			if err != nil {
				t.Fatal(err)
			}
			if first.Msg.Artifacts[0].Id != all[len(all)-1] {
				t.Errorf("first after update = %s, want %s", first.Msg.Artifacts[0].Id, all[len(all)-1])
			}
			// A token of the conversation's list does not page the user's.
			_, err = c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{PageToken: first.Msg.NextPageToken, ConversationId: conv.Id}))
			wantCode(t, err, connect.CodeInvalidArgument, "page_token")

			// Versions page too, newest first.
			id := all[0]
			for v := int32(1); v <= 4; v++ {
				updateArtifact(t, c, id, v, fmt.Sprint("v", v+1))
			}
			var numbers []int32
			token := ""
			for range 10 {
				res, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: id, PageSize: 2, PageToken: token}))
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range res.Msg.Versions {
					numbers = append(numbers, v.Version)
				}
				if token = res.Msg.NextPageToken; token == "" {
					break
				}
			}
			if diff := cmp.Diff([]int32{5, 4, 3, 2, 1}, numbers); diff != "" {
				t.Errorf("versions across pages (-want +got):\n%s", diff)
			}
		})
	}
}

// TestArtifactReadsOverGET: the reads are NO_SIDE_EFFECTS, so a Connect
// client may send them as HTTP GET (and a browser cache them).
func TestArtifactReadsOverGET(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := testCtx(t)
	user := uuid.New()
	a, _ := createArtifact(t, env.ArtifactClient(t, "connect+json", user), &parleyv1.CreateArtifactRequest{Title: "cached", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "body"})
	c := parleyv1connect.NewArtifactServiceClient(apitest.HTTPClientFor("connect+json"), env.URL,
		connect.WithProtoJSON(), connect.WithHTTPGet(), connect.WithInterceptors(apitest.Bearer(env.Token(t, user)), getOnly{t}))
	if _, err := c.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: a.Id})); err != nil {
		t.Error(err)
	}
	if _, err := c.ListArtifacts(ctx, connect.NewRequest(&parleyv1.ListArtifactsRequest{})); err != nil {
		t.Error(err)
	}
	if _, err := c.ListArtifactVersions(ctx, connect.NewRequest(&parleyv1.ListArtifactVersionsRequest{ArtifactId: a.Id})); err != nil {
		t.Error(err)
	}
	s := parleyv1connect.NewSearchServiceClient(apitest.HTTPClientFor("connect+json"), env.URL,
		connect.WithProtoJSON(), connect.WithHTTPGet(), connect.WithInterceptors(apitest.Bearer(env.Token(t, user)), getOnly{t}))
	res, err := s.Search(ctx, connect.NewRequest(&parleyv1.SearchRequest{Query: "body"}))
	if err != nil || len(res.Msg.Results) != 1 {
		t.Errorf("search over GET: %v (%v)", res, err)
	}
}

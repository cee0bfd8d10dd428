package rpc_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/server"
	"github.com/parleyhq/parley/internal/share"
)

// sharedSeed names what seedShareable saved.
type sharedSeed struct {
	convID, answerID, artifactID uuid.UUID
}

// seedShareable saves a conversation of userID: a system message, a
// question, an answer that wrote version 1 of an artifact, and a second
// question whose answer is still being written.
func seedShareable(t *testing.T, env *apitest.Env, userID uuid.UUID) sharedSeed {
	t.Helper()
	ctx := testCtx(t)
	st := env.Store
	conv, err := st.CreateConversation(ctx, userID, chat.NewConversation{Title: "Lisbon", SystemPrompt: "secret instructions"})
	if err != nil {
		t.Fatal(err)
	}
	sys, err := st.InsertMessage(ctx, userID, chat.Message{ConversationID: conv.ID, Role: chat.RoleSystem, Content: "secret system message", Status: chat.StatusCompleted})
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(parent uuid.UUID, content string) (chat.Message, chat.Message) {
		q, a, err := st.InsertExchange(ctx, userID, chat.NewExchange{
			ConversationID: conv.ID, ParentID: parent, UserMessageID: uuid.New(), Content: content, AssistantMessageID: uuid.New(),
			GenerationID: uuid.New(), Model: "m1", CreateTime: time.Now(), ReserveTokens: 10, QuotaTokens: 1_000_000, MaxActive: 10,
		})
		if err != nil {
			t.Fatal(err)
		}
		return *q, a
	}
	_, answer := exchange(sys.ID, "Plan a day")
	art, _, err := st.CreateArtifact(ctx, userID, artifact.NewArtifact{
		Title: "Itinerary", Kind: artifact.KindText, Content: "9:00 pastries", ConversationID: conv.ID, MessageID: answer.ID, Author: artifact.AuthorAssistant,
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := &chat.ArtifactRef{ID: art.ID, Version: 1, Title: "Itinerary", Kind: "text"}
	rounds := []chat.ToolRound{{Calls: []chat.ToolUse{
		{ID: "c1", Name: "create_artifact", Arguments: `{"content":"9:00 pastries"}`, Result: `{"ok":true}`, Artifact: ref},
		{ID: "c2", Name: "update_artifact", Arguments: `{}`, Result: "bad", IsError: true},
	}}}
	if _, err := st.FinishMessage(ctx, answer.ID, chat.Outcome{Content: "Here is a plan.", Status: chat.StatusCompleted, Model: "m1", ToolRounds: rounds}); err != nil {
		t.Fatal(err)
	}
	exchange(answer.ID, "And dinner?") // its answer streams
	return sharedSeed{convID: conv.ID, answerID: answer.ID, artifactID: art.ID}
}

func shareConversation(t *testing.T, c parleyv1connect.ShareServiceClient, convID uuid.UUID, system bool) *parleyv1.Share {
	t.Helper()
	res, err := c.ShareConversation(testCtx(t), connect.NewRequest(&parleyv1.ShareConversationRequest{ConversationId: convID.String(), IncludeSystemPrompt: system}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Share
}

// TestShareLinks: a share is a snapshot as of share time that anyone reads
// without a token (also with Connect GET at its URL, with cache headers),
// that shows no owner id and no system prompt unless asked, that its owner
// lists and revokes, and that goes with the conversation.
func TestShareLinks(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	t.Run("OverGET", func(t *testing.T) { testSharedReadOverGET(t, env) })
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			userID, otherID := uuid.New(), uuid.New()
			owner, other, public := env.ShareClient(t, protocol, userID), env.ShareClient(t, protocol, otherID), env.ShareClient(t, protocol, uuid.Nil)
			seed := seedShareable(t, env, userID)
			s := shareConversation(t, owner, seed.convID, false)
			read := func(c parleyv1connect.ShareServiceClient, id string) (*parleyv1.SharedConversation, error) {
				res, err := c.GetSharedConversation(ctx, connect.NewRequest(&parleyv1.GetSharedConversationRequest{ShareId: id}))
				if err != nil {
					return nil, err
				}
				return res.Msg.Conversation, nil
			}

			t.Run("Snapshot", func(t *testing.T) {
				if len(s.Id) != share.IDLength || strings.Trim(s.Id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
					t.Errorf("share id %q is not %d URL-safe characters", s.Id, share.IDLength)
				}
				if s.Url != rpc.ShareURL(env.URL, s.Id) || s.ConversationId != seed.convID.String() || s.Title != "Lisbon" || s.MessageCount != 3 || s.IncludeSystemPrompt {
					t.Errorf("share = %v", s)
				}
				// Later changes never reach the snapshot.
				if _, err := env.Store.InsertMessage(ctx, userID, chat.Message{ConversationID: seed.convID, ParentID: seed.answerID, Role: chat.RoleUser, Content: "later", Status: chat.StatusCompleted}); err != nil {
					t.Fatal(err)
				}
				renamed := "Renamed"
				if _, err := env.Store.UpdateConversation(ctx, userID, seed.convID, chat.ConversationPatch{Title: &renamed}); err != nil {
					t.Fatal(err)
				}
				if _, _, err := env.Store.AddVersion(ctx, userID, artifact.Edit{ArtifactID: seed.artifactID, Content: "changed later", Author: artifact.AuthorUser}); err != nil {
					t.Fatal(err)
				}
				got, err := read(public, s.Id)
				if err != nil {
					t.Fatal(err)
				}
				ref := &parleyv1.SavedArtifact{ArtifactId: seed.artifactID.String(), Version: 1, Title: "Itinerary", Kind: "text"}
				want := &parleyv1.SharedConversation{
					Title: "Lisbon",
					Messages: []*parleyv1.SharedMessage{
						{Role: parleyv1.Role_ROLE_USER, Content: "Plan a day"},
						{Role: parleyv1.Role_ROLE_ASSISTANT, Content: "Here is a plan.", Model: "m1", Artifacts: []*parleyv1.SavedArtifact{ref}},
						{Role: parleyv1.Role_ROLE_USER, Content: "And dinner?"},
					},
					Artifacts: []*parleyv1.SharedArtifact{{ArtifactId: seed.artifactID.String(), Version: 1, Title: "Itinerary", Kind: "text", Content: "9:00 pastries"}},
				}
				times := cmp.Options{protocmp.IgnoreFields(&parleyv1.SharedMessage{}, "create_time"), protocmp.IgnoreFields(&parleyv1.SharedConversation{}, "create_time")}
				if diff := cmp.Diff(want, got, protocmp.Transform(), times); diff != "" {
					t.Errorf("snapshot (-want +got):\n%s", diff)
				}
				if !got.CreateTime.AsTime().Equal(s.CreateTime.AsTime()) {
					t.Errorf("snapshot time %v, share time %v", got.CreateTime.AsTime(), s.CreateTime.AsTime())
				}
				doc, err := protojson.Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				for _, secret := range []string{userID.String(), seed.convID.String(), seed.answerID.String(), "secret", "create_artifact", "update_artifact", `ok\":true`} {
					if strings.Contains(string(doc), secret) {
						t.Errorf("the snapshot holds %q: %s", secret, doc)
					}
				}
				// The owner reads it too, and a token changes nothing.
				if again, err := read(other, s.Id); err != nil || !cmp.Equal(got, again, protocmp.Transform()) {
					t.Errorf("read with another user's token = %v, %v", again, err)
				}
			})
			t.Run("IncludeSystemPrompt", func(t *testing.T) {
				withPrompt := shareConversation(t, owner, seed.convID, true)
				got, err := read(public, withPrompt.Id)
				if err != nil {
					t.Fatal(err)
				}
				if got.SystemPrompt != "secret instructions" || len(got.Messages) == 0 || got.Messages[0].Role != parleyv1.Role_ROLE_SYSTEM || got.Messages[0].Content != "secret system message" || !withPrompt.IncludeSystemPrompt {
					t.Errorf("snapshot with the system prompt = %v", got)
				}
			})
			t.Run("ErrOtherUsersConversation", func(t *testing.T) {
				_, err := other.ShareConversation(ctx, connect.NewRequest(&parleyv1.ShareConversationRequest{ConversationId: seed.convID.String()}))
				wantCode(t, err, connect.CodeNotFound, "")
			})
			t.Run("ErrBadIDs", func(t *testing.T) {
				forged := strings.Repeat("A", share.IDLength)
				_, err := read(public, forged)
				wantCode(t, err, connect.CodeNotFound, "")
				for _, bad := range []string{"", "abc", strings.Repeat("!", share.IDLength), s.Id + "A", strings.Repeat("A", share.IDLength-1) + "="} {
					_, err := read(public, bad)
					wantCode(t, err, connect.CodeInvalidArgument, "share_id")
					_, err = owner.RevokeShare(ctx, connect.NewRequest(&parleyv1.RevokeShareRequest{ShareId: bad}))
					wantCode(t, err, connect.CodeInvalidArgument, "share_id")
				}
				_, err = owner.ShareConversation(ctx, connect.NewRequest(&parleyv1.ShareConversationRequest{ConversationId: "nope"}))
				wantCode(t, err, connect.CodeInvalidArgument, "conversation_id")
				_, err = owner.ListShares(ctx, connect.NewRequest(&parleyv1.ListSharesRequest{PageSize: 101}))
				wantCode(t, err, connect.CodeInvalidArgument, "page_size")
				_, err = owner.ListShares(ctx, connect.NewRequest(&parleyv1.ListSharesRequest{PageToken: "forged"}))
				wantCode(t, err, connect.CodeInvalidArgument, "page_token")
			})
			t.Run("ListAndRevoke", func(t *testing.T) {
				convID := seedShareable(t, env, userID).convID
				first := shareConversation(t, owner, convID, false)
				second := shareConversation(t, owner, convID, false)
				var ids []string
				token := ""
				for {
					res, err := owner.ListShares(ctx, connect.NewRequest(&parleyv1.ListSharesRequest{ConversationId: convID.String(), PageSize: 1, PageToken: token}))
					if err != nil {
						t.Fatal(err)
					}
					for _, sh := range res.Msg.Shares {
						ids = append(ids, sh.Id)
					}
					if token = res.Msg.NextPageToken; token == "" {
						break
					}
				}
				if diff := cmp.Diff([]string{second.Id, first.Id}, ids); diff != "" {
					t.Errorf("ListShares pages (-want +got):\n%s", diff)
				}
				if res, err := other.ListShares(ctx, connect.NewRequest(&parleyv1.ListSharesRequest{})); err != nil || len(res.Msg.Shares) != 0 {
					t.Errorf("another user's ListShares = %v, %v; want none", res, err)
				}
				// Another user's revoke is not_found and changes nothing.
				_, err := other.RevokeShare(ctx, connect.NewRequest(&parleyv1.RevokeShareRequest{ShareId: first.Id}))
				wantCode(t, err, connect.CodeNotFound, "")
				if _, err := read(public, first.Id); err != nil {
					t.Fatalf("after another user's revoke: %v", err)
				}
				if _, err := owner.RevokeShare(ctx, connect.NewRequest(&parleyv1.RevokeShareRequest{ShareId: first.Id})); err != nil {
					t.Fatal(err)
				}
				_, err = read(public, first.Id)
				wantCode(t, err, connect.CodeNotFound, "")
				_, err = owner.RevokeShare(ctx, connect.NewRequest(&parleyv1.RevokeShareRequest{ShareId: first.Id}))
				wantCode(t, err, connect.CodeNotFound, "")
				// The conversation's delete takes its shares.
				if _, err := env.ChatClient(t, protocol, userID).DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: convID.String()})); err != nil {
					t.Fatal(err)
				}
				_, err = read(public, second.Id)
				wantCode(t, err, connect.CodeNotFound, "")
			})
			t.Run("ExportAndDeleteMe", func(t *testing.T) {
				leaving := uuid.New()
				seed := seedShareable(t, env, leaving)
				sh := shareConversation(t, env.ShareClient(t, protocol, leaving), seed.convID, false)
				if _, err := env.ChatClient(t, protocol, leaving).RateMessage(ctx, connect.NewRequest(&parleyv1.RateMessageRequest{
					MessageId: seed.answerID.String(), Rating: parleyv1.Rating_RATING_DOWN, Text: "too vague",
				})); err != nil {
					t.Fatal(err)
				}
				users := env.UserClient(t, protocol, leaving)
				doc, _ := export(t, users, 0, "")
				for _, want := range []string{sh.Id, `"text" : "too vague"`, `"rating" : "down"`} {
					if !strings.Contains(string(doc), want) {
						t.Errorf("the export does not hold %s", want)
					}
				}
				if _, err := users.DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
					t.Fatal(err)
				}
				_, err := read(public, sh.Id)
				wantCode(t, err, connect.CodeNotFound, "")
				if n := countRows(t, env.Store.Pool(), "SELECT (SELECT count(*) FROM parley.shares WHERE user_id = $1) + (SELECT count(*) FROM parley.message_ratings WHERE user_id = $1)", leaving); n != 0 {
					t.Errorf("%d shares and ratings left after DeleteMe", n)
				}
			})
		})
	}
}

// testSharedReadOverGET: a share's URL is a Connect GET that a browser or
// CDN fetches as it is, answered with SharedCacheControl; an error is not
// cacheable.
func testSharedReadOverGET(t *testing.T, env *apitest.Env) {
	t.Parallel()
	userID := uuid.New()
	seed := seedShareable(t, env, userID)
	s := shareConversation(t, env.ShareClient(t, "connect+json", userID), seed.convID, false)
	if !strings.HasPrefix(s.Url, env.URL+"/") {
		t.Fatalf("URL %q is not under PUBLIC_URL %q", s.Url, env.URL)
	}
	get := func(url string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, body
	}
	res, body := get(s.Url)
	var got struct {
		Conversation struct {
			Title    string            `json:"title"`
			Messages []json.RawMessage `json:"messages"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(body, &got); err != nil || res.StatusCode != http.StatusOK || got.Conversation.Title != "Lisbon" || len(got.Conversation.Messages) != 3 {
		t.Fatalf("GET %s = %d %s (%v)", s.Url, res.StatusCode, body, err)
	}
	if cc := res.Header.Get("Cache-Control"); cc != rpc.SharedCacheControl {
		t.Errorf("Cache-Control = %q, want %q", cc, rpc.SharedCacheControl)
	}
	// The generated client's GET reaches the same.
	for _, protocol := range []string{"connect+json", "connect+proto"} {
		c := parleyv1connect.NewShareServiceClient(apitest.HTTPClientFor(protocol), env.URL, append(apitest.ClientOptions(protocol), connect.WithHTTPGet())...)
		res, err := c.GetSharedConversation(testCtx(t), connect.NewRequest(&parleyv1.GetSharedConversationRequest{ShareId: s.Id}))
		if err != nil || res.Msg.Conversation.Title != "Lisbon" || res.Header().Get("Cache-Control") != rpc.SharedCacheControl {
			t.Errorf("%s GET = %v, %v", protocol, res, err)
		}
	}
	// Revoked: not_found, with nothing that lets a cache keep it as a
	// success.
	if _, err := env.ShareClient(t, "connect+json", userID).RevokeShare(testCtx(t), connect.NewRequest(&parleyv1.RevokeShareRequest{ShareId: s.Id})); err != nil {
		t.Fatal(err)
	}
	res, body = get(s.Url)
	if res.StatusCode != http.StatusNotFound || strings.Contains(res.Header.Get("Cache-Control"), "public") {
		t.Errorf("GET after revoke = %d %q, Cache-Control %q", res.StatusCode, body, res.Header.Get("Cache-Control"))
	}
}

// TestSharedReadsRateLimited: reads of shares count per client address,
// with or without a token, against their own limit; the owner's other
// calls are not refused with them.
func TestSharedReadsRateLimited(t *testing.T) {
	t.Parallel()
	const limit = 3
	env := apitest.New(t, apitest.Options{RateLimits: &server.RateLimits{
		Chat: ratelimit.PerMinute(100), Agent: ratelimit.PerMinute(100), General: ratelimit.PerMinute(1000),
		AuthFailures: ratelimit.PerMinute(1000), SharedReads: ratelimit.PerMinute(limit),
	}})
	userID := uuid.New()
	seed := seedShareable(t, env, userID)
	s := shareConversation(t, env.ShareClient(t, "connect+json", userID), seed.convID, false)
	ctx := testCtx(t)
	// Every call comes from 127.0.0.1: the budget is shared by every
	// protocol, by anonymous callers and by the owner.
	callers := []parleyv1connect.ShareServiceClient{}
	for _, protocol := range apitest.Protocols {
		callers = append(callers, env.ShareClient(t, protocol, uuid.Nil), env.ShareClient(t, protocol, userID))
	}
	for i, c := range callers {
		_, err := c.GetSharedConversation(ctx, connect.NewRequest(&parleyv1.GetSharedConversationRequest{ShareId: s.Id}))
		switch {
		case i < limit && err != nil:
			t.Fatalf("read %d: %v", i+1, err)
		case i >= limit:
			wantCode(t, err, connect.CodeResourceExhausted, "rate limit exceeded")
			var ce *connect.Error
			if errors.As(err, &ce) && ce.Meta().Get("Retry-After") == "" {
				t.Errorf("read %d: no Retry-After", i+1)
			}
		}
	}
	// Other calls have their own budget.
	if _, err := env.ShareClient(t, "grpc", userID).ListShares(ctx, connect.NewRequest(&parleyv1.ListSharesRequest{})); err != nil {
		t.Errorf("ListShares after the shared reads ran out: %v", err)
	}
}

// TestShareURL: without PUBLIC_URL a share's URL is relative to the
// service; with it, absolute. Either is a Connect GET of the share.
func TestShareURL(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", share.IDLength)
	want := "/parley.v1.ShareService/GetSharedConversation?encoding=json&message=%7B%22shareId%22%3A%22" + id + "%22%7D"
	if got := rpc.ShareURL("", id); got != want {
		t.Errorf("ShareURL without a base = %q, want %q", got, want)
	}
	if got := rpc.ShareURL("https://parley.example.com", id); got != "https://parley.example.com"+want {
		t.Errorf("ShareURL with a base = %q", got)
	}
}

package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
)

func wantCode(tb testing.TB, err error, code connect.Code, msgPart string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("want %v error, got success", code)
	}
	if got := connect.CodeOf(err); got != code {
		tb.Fatalf("code = %v, want %v (err %v)", got, code, err)
	}
	var ce *connect.Error
	if msgPart != "" && (!errors.As(err, &ce) || !strings.Contains(ce.Message(), msgPart)) {
		tb.Fatalf("message %q does not mention %q", err, msgPart)
	}
}

func create(tb testing.TB, c parleyv1connect.ChatServiceClient, title string) *parleyv1.Conversation {
	tb.Helper()
	res, err := c.CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{Title: title}))
	if err != nil {
		tb.Fatal(err)
	}
	return res.Msg.Conversation
}

func TestConversationLifecycle(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := env.ChatClient(t, protocol, uuid.New())

			created, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{
				Title: "Trip", SystemPrompt: "Be brief.", Model: llm.OfflineModel,
			}))
			if err != nil {
				t.Fatal(err)
			}
			conv := created.Msg.Conversation
			if _, err := uuid.Parse(conv.Id); err != nil || conv.Title != "Trip" || conv.SystemPrompt != "Be brief." || conv.Model != llm.OfflineModel || conv.CreateTime == nil {
				t.Fatalf("created %v", conv)
			}

			got, err := c.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.Id}))
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got.Msg.Conversation, conv) {
				t.Errorf("get = %v, want %v", got.Msg.Conversation, conv)
			}

			newTitle := "Trip to Lisbon"
			updated, err := c.UpdateConversation(ctx, connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: conv.Id, Title: &newTitle}))
			if err != nil {
				t.Fatal(err)
			}
			u := updated.Msg.Conversation
			if u.Title != newTitle || u.SystemPrompt != "Be brief." || u.Model != llm.OfflineModel {
				t.Errorf("update changed the wrong fields: %v", u)
			}
			if !u.UpdateTime.AsTime().After(conv.UpdateTime.AsTime()) {
				t.Errorf("update_time did not move: %v -> %v", conv.UpdateTime.AsTime(), u.UpdateTime.AsTime())
			}

			if _, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id})); err != nil {
				t.Fatal(err)
			}
			_, err = c.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.Id}))
			wantCode(t, err, connect.CodeNotFound, "conversation not found")
			_, err = c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id}))
			wantCode(t, err, connect.CodeNotFound, "")
		})
	}
}

func TestCreateConversationIdempotent(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			testCreateConversationIdempotent(t, env, protocol)
		})
	}
}

func testCreateConversationIdempotent(t *testing.T, env *apitest.Env, protocol string) {
	ctx := context.Background()
	c := env.ChatClient(t, protocol, uuid.New())
	req := &parleyv1.CreateConversationRequest{Title: "Once", RequestId: "req-123"}
	first, err := c.CreateConversation(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.CreateConversation(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if first.Msg.Conversation.Id != second.Msg.Conversation.Id {
		t.Errorf("retry created a second conversation: %s then %s", first.Msg.Conversation.Id, second.Msg.Conversation.Id)
	}
	list, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Msg.Conversations); n != 1 {
		t.Errorf("%d conversations after a retried create, want 1", n)
	}
	// The same request id from another user is another conversation.
	other, err := env.ChatClient(t, protocol, uuid.New()).CreateConversation(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if other.Msg.Conversation.Id == first.Msg.Conversation.Id {
		t.Error("request ids are shared across users")
	}
}

func TestListConversationsPages(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			testListConversationsPages(t, env, protocol)
		})
	}
}

func testListConversationsPages(t *testing.T, env *apitest.Env, protocol string) {
	ctx := context.Background()
	user := uuid.New()
	c := env.ChatClient(t, protocol, user)
	var want []string
	for i := range 5 {
		want = append([]string{create(t, c, fmt.Sprintf("c%d", i)).Id}, want...) // newest first
	}
	var got []string
	token := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		res, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.Conversations) > 2 {
			t.Fatalf("page of %d, want at most 2", len(res.Msg.Conversations))
		}
		for _, conv := range res.Msg.Conversations {
			got = append(got, conv.Id)
		}
		token = res.Msg.NextPageToken
		if token == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ids across pages (-want +got):\n%s", diff)
	}

	// Updating a conversation moves it to the front.
	title := "bumped"
	if _, err := c.UpdateConversation(ctx, connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: want[4], Title: &title})); err != nil {
		t.Fatal(err)
	}
	res, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Conversations[0].Id != want[4] {
		t.Errorf("first after update = %s, want %s", res.Msg.Conversations[0].Id, want[4])
	}
}

func TestListMessages(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			testListMessages(t, env, protocol)
		})
	}
}

func testListMessages(t *testing.T, env *apitest.Env, protocol string) {
	ctx := context.Background()
	user := uuid.New()
	c := env.ChatClient(t, protocol, user)
	conv := create(t, c, "with messages")
	convID := uuid.MustParse(conv.Id)
	var want []string
	parent := uuid.Nil
	for i := range 5 {
		role := chat.RoleUser
		if i%2 == 1 {
			role = chat.RoleAssistant
		}
		m, err := env.Store.InsertMessage(ctx, user, chat.Message{
			ConversationID: convID, ParentID: parent, Role: role, Content: fmt.Sprintf("m%d", i), Status: chat.StatusCompleted,
		})
		if err != nil {
			t.Fatal(err)
		}
		parent = m.ID
		want = append(want, m.Content)
	}
	var got []string
	token := ""
	for page := 0; page < 10; page++ {
		res, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id, PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Msg.Messages {
			got = append(got, m.Content)
			if m.ConversationId != conv.Id || m.Status != parleyv1.MessageStatus_MESSAGE_STATUS_COMPLETED {
				t.Errorf("message %v", m)
			}
		}
		if token = res.Msg.NextPageToken; token == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages oldest first (-want +got):\n%s", diff)
	}

	// Deleting the conversation deletes its messages.
	if _, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id})); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := env.Store.Pool().QueryRow(ctx, "SELECT count(*) FROM parley.messages WHERE conversation_id = $1", convID).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d messages survived their conversation", left)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := context.Background()
	user := uuid.New()
	setup := env.ChatClient(t, "connect+json", user)
	conv := create(t, setup, "x")
	for range 3 {
		create(t, setup, "more")
	}
	page, err := setup.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	convToken := page.Msg.NextPageToken
	if convToken == "" {
		t.Fatal("no next page token")
	}
	tampered := []byte(convToken)
	tampered[5] ^= 1 // still base64url, different bytes
	if tampered[5] == '+' || tampered[5] == '/' {
		tampered[5] = 'A'
	}
	longTitle := strings.Repeat("é", chat.MaxTitleRunes+1)

	tests := []struct {
		name  string
		call  func(c parleyv1connect.ChatServiceClient) error
		field string
	}{
		{"ErrBadConversationID", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: "not-a-uuid"}))
			return err
		}, "conversation_id"},
		{"ErrMissingConversationID", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{}))
			return err
		}, "conversation_id"},
		{"ErrTitleTooLong", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: longTitle}))
			return err
		}, "title"},
		{"ErrUpdateTitleTooLong", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.UpdateConversation(ctx, connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: conv.Id, Title: &longTitle}))
			return err
		}, "title"},
		{"ErrSystemPromptTooLong", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{SystemPrompt: strings.Repeat("a", chat.MaxSystemPromptBytes+1)}))
			return err
		}, "system_prompt"},
		{"ErrUnknownModel", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Model: "gpt-99"}))
			return err
		}, "model"},
		{"ErrPageSizeTooLarge", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageSize: chat.MaxPageSize + 1}))
			return err
		}, "page_size"},
		{"ErrPageSizeNegative", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id, PageSize: -1}))
			return err
		}, "page_size"},
		{"ErrPageTokenGarbage", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageToken: "garbage!"}))
			return err
		}, "page_token"},
		{"ErrPageTokenTampered", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageToken: string(tampered)}))
			return err
		}, "page_token"},
		{"ErrPageTokenOfAnotherQuery", func(c parleyv1connect.ChatServiceClient) error {
			_, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id, PageToken: convToken}))
			return err
		}, "page_token"},
	}
	for _, protocol := range apitest.Protocols {
		c := env.ChatClient(t, protocol, user)
		for _, tt := range tests {
			t.Run(protocol+"/"+tt.name, func(t *testing.T) {
				wantCode(t, tt.call(c), connect.CodeInvalidArgument, tt.field)
			})
		}
	}

	t.Run("ErrPageTokenOfAnotherUser", func(t *testing.T) {
		other := env.ChatClient(t, "connect+json", uuid.New())
		_, err := other.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{PageToken: convToken}))
		wantCode(t, err, connect.CodeInvalidArgument, "page_token")
	})
}

// TestCrossUser: user B must get not_found on every RPC that names user A's
// conversation, exactly as for an id that does not exist.
func TestCrossUser(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := context.Background()
	alice := env.ChatClient(t, "connect+json", uuid.New())
	aliceConv := create(t, alice, "alice's")
	title := "stolen"
	calls := []struct {
		name string
		call func(c parleyv1connect.ChatServiceClient, id string) error
	}{
		{"GetConversation", func(c parleyv1connect.ChatServiceClient, id string) error {
			_, err := c.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: id}))
			return err
		}},
		{"UpdateConversation", func(c parleyv1connect.ChatServiceClient, id string) error {
			_, err := c.UpdateConversation(ctx, connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: id, Title: &title}))
			return err
		}},
		{"DeleteConversation", func(c parleyv1connect.ChatServiceClient, id string) error {
			_, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: id}))
			return err
		}},
		{"ListMessages", func(c parleyv1connect.ChatServiceClient, id string) error {
			_, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: id}))
			return err
		}},
	}
	bob := uuid.New()
	for _, protocol := range apitest.Protocols {
		c := env.ChatClient(t, protocol, bob)
		for _, tt := range calls {
			t.Run(protocol+"/"+tt.name, func(t *testing.T) {
				errOther := tt.call(c, aliceConv.Id)
				errMissing := tt.call(c, uuid.NewString())
				wantCode(t, errOther, connect.CodeNotFound, "")
				wantCode(t, errMissing, connect.CodeNotFound, "")
				if connect.CodeOf(errOther) != connect.CodeOf(errMissing) || errOther.Error() != errMissing.Error() {
					t.Errorf("another user's id (%v) answers unlike a missing id (%v)", errOther, errMissing)
				}
			})
		}
	}
	list, err := env.ChatClient(t, "grpc", bob).ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Conversations) != 0 {
		t.Errorf("bob sees %d conversations of alice", len(list.Msg.Conversations))
	}
	// Alice's conversation is untouched by Bob's attempts.
	got, err := alice.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: aliceConv.Id}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Msg.Conversation.Title != "alice's" {
		t.Errorf("title = %q after bob's update attempt", got.Msg.Conversation.Title)
	}
}

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	ctx := context.Background()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := env.ChatClient(t, protocol, uuid.Nil)
			_, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			wantCode(t, err, connect.CodeUnauthenticated, "access token")

			forged := parleyv1connect.NewChatServiceClient(env.HTTPClient, env.URL,
				append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer("eyJhbGciOiJub25lIn0.e30.")))...)
			_, err = forged.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			wantCode(t, err, connect.CodeUnauthenticated, "access token")
		})
	}
}

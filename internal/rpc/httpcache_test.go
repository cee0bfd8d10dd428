package rpc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/rpc"
)

// getCodecs are the Connect codecs a GET read is tested with.
var getCodecs = map[string][]connect.ClientOption{
	"json":   {connect.WithHTTPGet(), connect.WithProtoJSON()},
	"binary": {connect.WithHTTPGet()},
}

// getClient is a ChatService client that sends reads as Connect GETs.
func getClient(tb testing.TB, env *apitest.Env, codec []connect.ClientOption, userID uuid.UUID) parleyv1connect.ChatServiceClient {
	tb.Helper()
	opts := append(append([]connect.ClientOption{}, codec...), connect.WithInterceptors(apitest.Bearer(env.Token(tb, userID))))
	return parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor("connect+json"), env.URL, opts...)
}

// getConversation reads a conversation with an optional If-None-Match.
func getConversation(c parleyv1connect.ChatServiceClient, id, ifNoneMatch string) (*connect.Response[parleyv1.GetConversationResponse], error) {
	req := connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: id})
	if ifNoneMatch != "" {
		req.Header().Set("If-None-Match", ifNoneMatch)
	}
	return c.GetConversation(context.Background(), req)
}

func TestHTTPCacheConnectGET(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for name, codec := range getCodecs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			owner := uuid.New()
			c := getClient(t, env, codec, owner)
			conv := create(t, c, "Cached")

			res, err := getConversation(c, conv.Id, "")
			if err != nil {
				t.Fatal(err)
			}
			etag := res.Header().Get("Etag")
			if etag == "" || res.Header().Get("Cache-Control") != "private, no-cache" {
				t.Fatalf("GET headers: Etag %q, Cache-Control %q", etag, res.Header().Get("Cache-Control"))
			}
			again, err := getConversation(c, conv.Id, "")
			if err != nil || again.Header().Get("Etag") != etag {
				t.Fatalf("second read: etag %q, want %q (err %v)", again.Header().Get("Etag"), etag, err)
			}

			t.Run("NotModified", func(t *testing.T) {
				for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
					if _, err := getConversation(c, conv.Id, inm); !connect.IsNotModifiedError(err) {
						t.Errorf("If-None-Match %s: err = %v, want not modified", inm, err)
					}
				}
			})
			t.Run("OtherTag", func(t *testing.T) {
				res, err := getConversation(c, conv.Id, `"stale"`)
				if err != nil || res.Msg.Conversation.Id != conv.Id {
					t.Fatalf("a stale tag must get the full answer: %v", err)
				}
			})
			t.Run("ChangedByWrite", func(t *testing.T) {
				title := "Renamed"
				if _, err := c.UpdateConversation(context.Background(), connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: conv.Id, Title: &title})); err != nil {
					t.Fatal(err)
				}
				res, err := getConversation(c, conv.Id, etag)
				if err != nil {
					t.Fatalf("after a write the old tag must not match: %v", err)
				}
				if res.Msg.Conversation.Title != title || res.Header().Get("Etag") == etag {
					t.Fatalf("after a write: title %q, etag %q (was %q)", res.Msg.Conversation.Title, res.Header().Get("Etag"), etag)
				}
			})
			t.Run("ErrOtherUser", func(t *testing.T) {
				// Another user's tag guess answers not_found, never 304.
				other := getClient(t, env, codec, uuid.New())
				_, err := getConversation(other, conv.Id, "*")
				wantCode(t, err, connect.CodeNotFound, "")
			})
		})
	}
}

// TestHTTPCacheRaw checks the wire: a 304 has no body and keeps the
// validator, and an unauthenticated GET is refused as before.
func TestHTTPCacheRaw(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	owner := uuid.New()
	conv := create(t, env.ChatClient(t, "connect+json", owner), "Raw")
	target := env.URL + "/" + parleyv1connect.ChatServiceName + "/GetConversation?encoding=json&connect=v1&message=" +
		url.QueryEscape(`{"conversationId":"`+conv.Id+`"}`)
	do := func(t *testing.T, token, ifNoneMatch string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ifNoneMatch != "" {
			req.Header.Set("If-None-Match", ifNoneMatch)
		}
		res, err := env.HTTPClient.Do(req)
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
	token := env.Token(t, owner)
	full, body := do(t, token, "")
	etag := full.Header.Get("Etag")
	if full.StatusCode != http.StatusOK || etag == "" || len(body) == 0 {
		t.Fatalf("full read: %d, etag %q, %d bytes", full.StatusCode, etag, len(body))
	}
	hit, body := do(t, token, etag)
	if hit.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("conditional read: %d with %d bytes, want 304 and none", hit.StatusCode, len(body))
	}
	if hit.Header.Get("Etag") != etag || hit.Header.Get("Cache-Control") != "private, no-cache" {
		t.Errorf("304 headers: Etag %q, Cache-Control %q", hit.Header.Get("Etag"), hit.Header.Get("Cache-Control"))
	}
	anonymous, _ := do(t, "", etag)
	if anonymous.StatusCode != http.StatusUnauthorized || anonymous.Header.Get("Etag") != "" {
		t.Errorf("unauthenticated GET: %d, Etag %q; want 401 without a tag", anonymous.StatusCode, anonymous.Header.Get("Etag"))
	}
}

// TestHTTPCacheAcrossInstances: a write on one instance makes the tag
// another instance handed out stale at once, and both compute the same tag.
func TestHTTPCacheAcrossInstances(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, apitest.Options{})
	b := apitest.New(t, apitest.Options{}) // the same database
	owner := uuid.New()
	codec := getCodecs["binary"]
	ca, cb := getClient(t, a, codec, owner), getClient(t, b, codec, owner)
	conv := create(t, ca, "Shared")
	first, err := getConversation(ca, conv.Id, "")
	if err != nil {
		t.Fatal(err)
	}
	etag := first.Header().Get("Etag")
	if _, err := getConversation(cb, conv.Id, etag); !connect.IsNotModifiedError(err) {
		t.Fatalf("the other instance must honour the tag: %v", err)
	}
	title := "Written on b"
	if _, err := cb.UpdateConversation(context.Background(), connect.NewRequest(&parleyv1.UpdateConversationRequest{ConversationId: conv.Id, Title: &title})); err != nil {
		t.Fatal(err)
	}
	res, err := getConversation(ca, conv.Id, etag)
	if err != nil {
		t.Fatalf("a stale tag after a write on another instance: %v", err)
	}
	if res.Msg.Conversation.Title != title {
		t.Fatalf("title %q, want %q", res.Msg.Conversation.Title, title)
	}
	onB, err := getConversation(cb, conv.Id, "")
	if err != nil || onB.Header().Get("Etag") != res.Header().Get("Etag") {
		t.Fatalf("instances disagree on the tag: %q and %q (err %v)", res.Header().Get("Etag"), onB.Header().Get("Etag"), err)
	}
}

// TestHTTPCacheOnlyGET: POST reads and streams carry neither header.
func TestHTTPCacheOnlyGET(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := env.ChatClient(t, protocol, uuid.New())
			conv := create(t, c, "Post")
			res, err := getConversation(c, conv.Id, "*")
			if err != nil {
				t.Fatalf("a POST read ignores If-None-Match: %v", err)
			}
			if res.Header().Get("Etag") != "" || res.Header().Get("Cache-Control") != "" {
				t.Errorf("POST read headers: Etag %q, Cache-Control %q", res.Header().Get("Etag"), res.Header().Get("Cache-Control"))
			}
			stream, err := c.SendMessage(context.Background(), connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "hello"}))
			if err != nil {
				t.Fatal(err)
			}
			for stream.Receive() {
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if stream.ResponseHeader().Get("Etag") != "" || stream.ResponseHeader().Get("Cache-Control") != "" {
				t.Errorf("stream headers: Etag %q, Cache-Control %q", stream.ResponseHeader().Get("Etag"), stream.ResponseHeader().Get("Cache-Control"))
			}
			stream.Close()
		})
	}
}

// publicRead sets its own Cache-Control on GetConversation, as a public
// share does for CDNs.
type publicRead struct{ *rpc.ChatHandler }

func (p publicRead) GetConversation(ctx context.Context, req *connect.Request[parleyv1.GetConversationRequest]) (*connect.Response[parleyv1.GetConversationResponse], error) {
	res, err := p.ChatHandler.GetConversation(ctx, req)
	if err == nil {
		res.Header().Set("Cache-Control", "public, max-age=60")
	}
	return res, err
}

// TestHTTPCacheKeepsHandlerCacheControl: a handler's own Cache-Control is
// kept, on the 200 and on the 304, beside the ETag.
func TestHTTPCacheKeepsHandlerCacheControl(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{Chat: func(h *rpc.ChatHandler) parleyv1connect.ChatServiceHandler { return publicRead{h} }})
	c := getClient(t, env, getCodecs["json"], uuid.New())
	conv := create(t, c, "Public")
	res, err := getConversation(c, conv.Id, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Header().Get("Cache-Control") != "public, max-age=60" || res.Header().Get("Etag") == "" {
		t.Fatalf("headers: Cache-Control %q, Etag %q", res.Header().Get("Cache-Control"), res.Header().Get("Etag"))
	}
	_, err = getConversation(c, conv.Id, res.Header().Get("Etag"))
	var ce *connect.Error
	if !connect.IsNotModifiedError(err) || !errors.As(err, &ce) || ce.Meta().Get("Cache-Control") != "public, max-age=60" {
		t.Fatalf("304 must keep the handler's Cache-Control: %v", err)
	}
}

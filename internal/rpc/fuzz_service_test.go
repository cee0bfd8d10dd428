package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// fuzzCodes are the answers a request the client got wrong may have:
// anything else (internal, unknown) is the server's fault.
var fuzzCodes = map[connect.Code]bool{
	0:                              true, // success
	connect.CodeInvalidArgument:    true,
	connect.CodeNotFound:           true,
	connect.CodeResourceExhausted:  true,
	connect.CodeFailedPrecondition: true,
	connect.CodeUnauthenticated:    true,
	connect.CodePermissionDenied:   true,
	connect.CodeUnimplemented:      true,
}

// leakMarkers are signs of internal detail in an error message: driver and
// SQL errors, Go source paths, stack traces.
var leakMarkers = []string{"pgx", "sqlstate", "sql", "postgres", "redis", "goroutine ", ".go:", "/home/", "/work/", "/usr/", "runtime.", "panic"}

// FuzzRequests sends arbitrary bodies, as Connect JSON and Connect binary,
// to every RPC of every parley.v1 service (from the descriptors, so a new
// RPC is covered), through the service exactly as production builds it,
// signed in. Every answer is a success or a Connect error with a code a
// client's mistake earns (never internal or unknown), within a few
// seconds, and its message holds nothing internal (driver, SQL, source
// paths, traces) that the request did not itself contain.
func FuzzRequests(f *testing.F) {
	env := apitest.New(f, apitest.Options{})
	user := uuid.New()
	token := env.Token(f, user)
	// DeleteMe is called as a user of its own, or the first call to it
	// would erase what the seeds below reach.
	deleter := env.Token(f, uuid.New())
	methods := requestMethods(f)
	clients := map[bool]*http.Client{false: apitest.HTTPClientFor("connect+json"), true: apitest.HTTPClientFor("connect+proto")}
	f.Cleanup(func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	})

	// A conversation of the user's, so that seeds reach past "not found".
	conv, err := env.ChatClient(f, "connect+proto", user).CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "fuzz"}))
	if err != nil {
		f.Fatal(err)
	}
	convID := conv.Msg.GetConversation().GetId()
	index := map[protoreflect.FullName]uint8{}
	for i, m := range methods {
		index[m.FullName()] = uint8(i)
		f.Add(uint8(i), true, []byte{})
		f.Add(uint8(i), false, []byte(`{}`))
	}
	seed := func(method protoreflect.FullName, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index[method], true, b)
		j, err := protojson.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index[method], false, j)
	}
	seed("parley.v1.ChatService.SendMessage", &parleyv1.SendMessageRequest{ConversationId: convID, Content: "hello"})
	seed("parley.v1.ChatService.SendMessage", &parleyv1.SendMessageRequest{ConversationId: convID, Content: "hi", ParentMessageId: uuid.NewString()})
	seed("parley.v1.ChatService.ListMessages", &parleyv1.ListMessagesRequest{ConversationId: convID, PageSize: -1, PageToken: "xyz"})
	seed("parley.v1.ChatService.UpdateConversation", &parleyv1.UpdateConversationRequest{ConversationId: convID, Title: proto.String(strings.Repeat("t", 1000))})
	seed("parley.v1.ChatService.GetConversation", &parleyv1.GetConversationRequest{ConversationId: "not-a-uuid"})
	seed("parley.v1.ChatService.CreateConversation", &parleyv1.CreateConversationRequest{Model: "no-such-model", RequestId: "r"})
	f.Add(index["parley.v1.ChatService.CreateConversation"], false, []byte(`{"title":42}`))
	f.Add(index["parley.v1.ChatService.CreateConversation"], false, []byte(`{"title":"\u0000"}`))
	f.Add(index["parley.v1.ChatService.GetConversation"], true, []byte("\x0a\x03\xff\xfe\xfd"))
	f.Add(index["parley.v1.ChatService.GetConversation"], true, []byte("\x0a\xff\xff\xff\xff\x0f"))

	f.Fuzz(func(t *testing.T, pick uint8, binary bool, body []byte) {
		method := methods[int(pick)%len(methods)]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		as := token
		if method.FullName() == "parley.v1.UserService.DeleteMe" {
			as = deleter
		}
		err := callBody(ctx, clients[binary], env.URL, as, method, binary, body)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s took %v", method.FullName(), took)
		}
		code := connect.CodeOf(err)
		if err == nil {
			code = 0
		}
		if !fuzzCodes[code] {
			t.Fatalf("%s (binary %v) with %q: %v", method.FullName(), binary, body, err)
		}
		var ce *connect.Error
		if errors.As(err, &ce) {
			msg, sent := strings.ToLower(ce.Message()), strings.ToLower(string(body))
			for _, marker := range leakMarkers {
				if strings.Contains(msg, marker) && !strings.Contains(sent, marker) {
					t.Fatalf("%s: the error %q shows %q", method.FullName(), ce.Message(), marker)
				}
			}
		}
	})
}

// callBody calls method with body as its encoded request, over Connect
// (binary or JSON), and returns the call's error: a stream's is its end.
func callBody(ctx context.Context, client *http.Client, baseURL, token string, method protoreflect.MethodDescriptor, binary bool, body []byte) error {
	codec := rawCodec{"json"}
	if binary {
		codec = rawCodec{"proto"}
	}
	url := fmt.Sprintf("%s/%s/%s", baseURL, method.Parent().FullName(), method.Name())
	c := connect.NewClient[rawMessage, rawMessage](client, url, connect.WithCodec(codec), connect.WithInterceptors(apitest.Bearer(token)))
	req := connect.NewRequest(&rawMessage{body})
	if !method.IsStreamingServer() {
		_, err := c.CallUnary(ctx, req)
		return err
	}
	stream, err := c.CallServerStream(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
	}
	return stream.Err()
}

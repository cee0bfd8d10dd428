package rpc_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// BenchmarkConnectGET compares a full ListMessages over Connect GET (a
// conversation of ten exchanges, JSON) with the same read made conditional
// on the ETag it answered, which the server answers 304 with no body.
//
//	go test -run '^$' -bench ConnectGET ./internal/rpc/
func BenchmarkConnectGET(b *testing.B) {
	env := apitest.New(b, apitest.Options{})
	owner := uuid.New()
	c := getClient(b, env, getCodecs["json"], owner)
	conv := create(b, c, "Bench")
	ctx := context.Background()
	for range 10 {
		stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.Id, Content: "tell me about the weather in Lisbon in spring"}))
		if err != nil {
			b.Fatal(err)
		}
		for stream.Receive() {
		}
		if err := stream.Err(); err != nil {
			b.Fatal(err)
		}
		stream.Close()
	}
	list := func(ifNoneMatch string) (*connect.Response[parleyv1.ListMessagesResponse], error) {
		req := connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id})
		if ifNoneMatch != "" {
			req.Header().Set("If-None-Match", ifNoneMatch)
		}
		return c.ListMessages(ctx, req)
	}
	first, err := list("")
	if err != nil {
		b.Fatal(err)
	}
	etag := first.Header().Get("Etag")
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			if _, err := list(""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("not_modified", func(b *testing.B) {
		for b.Loop() {
			if _, err := list(etag); !connect.IsNotModifiedError(err) {
				b.Fatalf("want 304, got %v", err)
			}
		}
	})
}

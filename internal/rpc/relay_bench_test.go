package rpc

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// benchDelta is a typical delta: 16 bytes of text, as llmtest.Paced sends.
var benchDelta = chat.Event{Seq: 42, Kind: chat.EventDelta, Text: " w41xxxxxxxxxxxx"}

// BenchmarkEncodeDelta is the per-delta conversion and protobuf encoding
// that every SendMessage stream pays.
func BenchmarkEncodeDelta(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(toProtoEvent(benchDelta)); err != nil {
			b.Fatal(err)
		}
	}
}

// deltaStream yields n deltas, then ends.
type deltaStream struct{ left int }

func (s *deltaStream) Next(context.Context) (chat.Event, error) {
	if s.left == 0 {
		return chat.Event{}, io.EOF
	}
	s.left--
	return benchDelta, nil
}

// relayHandler serves SendMessage from a deltaStream through relay.
type relayHandler struct {
	parleyv1connect.UnimplementedChatServiceHandler
	deltas int
}

func (h relayHandler) SendMessage(ctx context.Context, _ *connect.Request[parleyv1.SendMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	return relay(ctx, &deltaStream{left: h.deltas}, out)
}

// BenchmarkRelay is the token relay over the wire: one op is a whole
// SendMessage stream of 64 deltas, from relay through connect-go and h2c on
// loopback to a client that decodes each one, as a browser would. The
// ns/delta metric is what each delta costs both ends together.
func BenchmarkRelay(b *testing.B) {
	const deltas = 64
	for _, tc := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"Connect", nil},
		{"ConnectJSON", []connect.ClientOption{connect.WithProtoJSON()}},
		{"GRPC", []connect.ClientOption{connect.WithGRPC()}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mux := http.NewServeMux()
			mux.Handle(parleyv1connect.NewChatServiceHandler(relayHandler{deltas: deltas}))
			var protocols http.Protocols
			protocols.SetHTTP1(true)
			protocols.SetUnencryptedHTTP2(true)
			srv := &http.Server{Handler: mux, Protocols: &protocols}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			b.Cleanup(func() { srv.Close() })
			var clientProtocols http.Protocols
			clientProtocols.SetUnencryptedHTTP2(true)
			hc := &http.Client{Transport: &http.Transport{Protocols: &clientProtocols}}
			client := parleyv1connect.NewChatServiceClient(hc, "http://"+ln.Addr().String(), tc.opts...)
			ctx := context.Background()
			req := &parleyv1.SendMessageRequest{ConversationId: "00000000-0000-0000-0000-000000000000", Content: "hi"}
			b.ReportAllocs()
			for b.Loop() {
				stream, err := client.SendMessage(ctx, connect.NewRequest(req))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for stream.Receive() {
					n++
				}
				if err := stream.Err(); err != nil || n != deltas {
					b.Fatalf("received %d deltas: %v", n, err)
				}
				stream.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*deltas), "ns/delta")
		})
	}
}

package rpc

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// burstStream yields events in bursts: within a burst the next event is
// ready (Buffered), and a burst starts only once the client has received
// every event of the one before, as a model that waits would.
type burstStream struct {
	bursts, size int
	seq          int64
	received     <-chan int64 // the seq of each event the client received
	buffered     bool
}

func (s *burstStream) Next(ctx context.Context) (chat.Event, error) {
	if s.seq == int64(s.bursts*s.size) {
		return chat.Event{}, io.EOF
	}
	if s.seq > 0 && s.seq%int64(s.size) == 0 {
		// Wait for the client to have the whole burst: a held flush would
		// keep its last event back, and this would wait for ever.
		for {
			select {
			case got := <-s.received:
				if got < s.seq {
					continue
				}
			case <-ctx.Done():
				return chat.Event{}, ctx.Err()
			}
			break
		}
	}
	s.seq++
	s.buffered = s.seq%int64(s.size) != 0
	return chat.Event{Seq: s.seq, Kind: chat.EventDelta, Text: "x"}, nil
}

func (s *burstStream) Buffered() bool { return s.buffered }

type burstHandler struct {
	parleyv1connect.UnimplementedChatServiceHandler
	stream *burstStream
}

func (h burstHandler) SendMessage(ctx context.Context, _ *connect.Request[parleyv1.SendMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	return relay(ctx, h.stream, out)
}

// TestGateFlushes: a follower that is behind gets its burst without a
// flush per event, and the last event of every burst is flushed at once,
// over Connect, gRPC and gRPC-Web.
func TestGateFlushes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"Connect", nil},
		{"GRPC", []connect.ClientOption{connect.WithGRPC()}},
		{"GRPCWeb", []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			received := make(chan int64, 64)
			stream := &burstStream{bursts: 4, size: 5, received: received}
			mux := http.NewServeMux()
			path, h := parleyv1connect.NewChatServiceHandler(burstHandler{stream: stream})
			var flushes atomic.Int64 // the flushes that reach net/http
			mux.Handle(path, countFlushes(GateFlushes(h), &flushes))
			var protocols http.Protocols
			protocols.SetHTTP1(true)
			protocols.SetUnencryptedHTTP2(true)
			srv := &http.Server{Handler: mux, Protocols: &protocols}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			var clientProtocols http.Protocols
			clientProtocols.SetUnencryptedHTTP2(true)
			hc := &http.Client{Transport: &http.Transport{Protocols: &clientProtocols}}
			client := parleyv1connect.NewChatServiceClient(hc, "http://"+ln.Addr().String(), tc.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			res, err := client.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var seq int64
			for res.Receive() {
				if got := res.Msg().GetSeq(); got != seq+1 {
					t.Fatalf("seq %d after %d", got, seq)
				}
				seq++
				received <- seq
			}
			if err := res.Err(); err != nil || seq != 20 {
				t.Fatalf("received %d of 20 events: %v", seq, err)
			}
			// One flush per burst, and the stream's end: not one per event.
			if n := flushes.Load(); n == 0 || n > int64(2*stream.bursts) {
				t.Errorf("%d flushes reached net/http for %d events in %d bursts, want one per burst and the end", n, seq, stream.bursts)
			}
		})
	}
}

// countFlushes counts the flushes h makes that reach the server's
// ResponseWriter.
func countFlushes(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&flushCounter{ResponseWriter: w, n: n}, r)
	})
}

type flushCounter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *flushCounter) Flush() {
	c.n.Add(1)
	c.ResponseWriter.(http.Flusher).Flush()
}

func (c *flushCounter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

package server_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/server"
)

// bombBytes is what the gzip bomb inflates to: the old 10 MiB read limit,
// plus its few bytes of framing.
const bombBytes = 10 << 20

// gzipBomb returns a gzipped request message of bombBytes for protocol
// (JSON for connect+json, protobuf for the others), about 10 KiB on the
// wire. It is built in pieces so that the test itself never holds 10 MiB.
func gzipBomb(tb testing.TB, protocol string) []byte {
	tb.Helper()
	var head, tail []byte
	if protocol == "connect+json" {
		head, tail = []byte(`{"x":"`), []byte(`"}`)
	} else {
		// Field 1000, unknown to every request: the limit is checked
		// before the message is parsed, so its shape does not matter.
		head = protowire.AppendVarint(protowire.AppendTag(nil, 1000, protowire.BytesType), bombBytes)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(head)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for range bombBytes / len(chunk) {
		zw.Write(chunk)
	}
	zw.Write(tail)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// envelope frames one message as gRPC, gRPC-Web and Connect streams do.
func envelope(flags byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// rawRequest is the HTTP request a client of protocol sends to call
// procedure with an already gzipped message: built by hand, so that
// sending it allocates next to nothing on the client side of the test.
func rawRequest(ctx context.Context, tb testing.TB, baseURL, protocol, procedure string, streaming bool, gzipped []byte) *http.Request {
	tb.Helper()
	codec := "proto"
	if protocol == "connect+json" {
		codec = "json"
	}
	header := http.Header{}
	var body []byte
	switch {
	case protocol == "grpc":
		header.Set("Content-Type", "application/grpc+proto")
		header.Set("Grpc-Encoding", "gzip")
		header.Set("Te", "trailers")
		body = envelope(1, gzipped)
	case protocol == "grpcweb":
		header.Set("Content-Type", "application/grpc-web+proto")
		header.Set("Grpc-Encoding", "gzip")
		body = envelope(1, gzipped)
	case streaming:
		header.Set("Content-Type", "application/connect+"+codec)
		header.Set("Connect-Content-Encoding", "gzip")
		body = envelope(1, gzipped)
	default:
		header.Set("Content-Type", "application/"+codec)
		header.Set("Content-Encoding", "gzip")
		body = gzipped
	}
	header.Set("Connect-Protocol-Version", "1")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+procedure, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header = header
	return req
}

// answerCode reads a raw response to its end and returns the RPC's code
// however the protocol carries it: the JSON body of a Connect unary error,
// the end-of-stream frame of a Connect stream, gRPC trailers (or headers,
// for a trailers-only answer), or gRPC-Web's trailer frame.
func answerCode(tb testing.TB, protocol string, streaming bool, res *http.Response) connect.Code {
	tb.Helper()
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("reading the answer: %v", err)
	}
	grpcStatus := func(s string) connect.Code {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("grpc-status %q in %q", s, body)
		}
		return connect.Code(n)
	}
	jsonCode := func(data []byte) connect.Code {
		var e struct {
			Code  connect.Code `json:"code"`
			Error *struct {
				Code connect.Code `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &e); err != nil {
			tb.Fatalf("error body %q: %v", data, err)
		}
		if e.Error != nil {
			return e.Error.Code
		}
		return e.Code
	}
	switch {
	case protocol == "grpc" || protocol == "grpcweb":
		if s := res.Header.Get("Grpc-Status"); s != "" {
			return grpcStatus(s)
		}
		if s := res.Trailer.Get("Grpc-Status"); s != "" {
			return grpcStatus(s)
		}
		for frames := body; len(frames) >= 5; {
			size := binary.BigEndian.Uint32(frames[1:5])
			msg := frames[5 : 5+size]
			if frames[0]&0x80 != 0 {
				for _, line := range strings.Split(string(msg), "\r\n") {
					if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "grpc-status") {
						return grpcStatus(strings.TrimSpace(v))
					}
				}
			}
			frames = frames[5+size:]
		}
	case streaming:
		for frames := body; len(frames) >= 5; {
			size := binary.BigEndian.Uint32(frames[1:5])
			if frames[0]&0x02 != 0 {
				return jsonCode(frames[5 : 5+size])
			}
			frames = frames[5+size:]
		}
	case res.StatusCode == http.StatusOK:
		return 0
	default:
		return jsonCode(body)
	}
	tb.Fatalf("no status in the %s answer: HTTP %d %q", protocol, res.StatusCode, body)
	return 0
}

// procedureCase is one procedure the server mounts, by path.
type procedureCase struct {
	path      string
	streaming bool
}

// mountedProcedures lists every method of every Parley service, from the
// generated descriptors so that a new one is covered, and the public
// health check.
func mountedProcedures() []procedureCase {
	out := []procedureCase{{path: "/" + grpchealth.HealthV1ServiceName + "/Check"}}
	for _, file := range []protoreflect.FileDescriptor{parleyv1.File_parley_v1_chat_proto, parleyv1.File_parley_v1_artifact_proto, parleyv1.File_parley_v1_search_proto} {
		services := file.Services()
		for i := range services.Len() {
			methods := services.Get(i).Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				out = append(out, procedureCase{path: procedurePath(m), streaming: m.IsStreamingServer()})
			}
		}
	}
	return out
}

func procedurePath(m protoreflect.MethodDescriptor) string {
	return "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
}

// TestGzipBombBeforeAuthentication: connect-go reads, inflates and parses a
// unary request before any interceptor runs, so with authentication as an
// interceptor an anonymous caller could make the server hold whatever the
// read limit let through (10 MiB, once). A 10 MiB gzip bomb, sent without a
// token to every procedure over every protocol, must be refused for under
// 1 MiB of allocation: private procedures refuse it before reading it, the
// public health check at its 16 KiB limit. With a token it is read up to
// the procedure's limit and refused there.
//
// How the allocation is measured: runtime.MemStats.TotalAlloc counts every
// byte the process has ever allocated on the heap, so its growth across one
// call is what that call cost, server and client together, plus whatever
// other goroutines allocated meanwhile. That over-counts, never under: the
// client's share is small because the request is built and gzipped before
// the measurement, and the test does not run in parallel with others. Two
// GCs before each call empty the sync.Pools (connect's buffers and
// decompressors), so the call pays for its buffers as a first caller
// would. Each call is measured three times and the least is kept: noise only
// adds, so the least is still an upper bound of the call's cost.
func TestGzipBombBeforeAuthentication(t *testing.T) {
	// Not parallel: other tests' allocations would be counted.
	env := apitest.New(t, apitest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const budget = 1 << 20
	token := env.Token(t, uuid.New())
	for _, protocol := range apitest.Protocols {
		bomb := gzipBomb(t, protocol)
		client := apitest.HTTPClientFor(protocol)
		for _, p := range mountedProcedures() {
			t.Run(protocol+p.path, func(t *testing.T) {
				call := func() connect.Code {
					res, err := client.Do(rawRequest(ctx, t, env.URL, protocol, p.path, p.streaming, bomb))
					if err != nil {
						t.Fatal(err)
					}
					return answerCode(t, protocol, p.streaming, res)
				}
				call() // opens the connection, outside the measurement
				least := uint64(1 << 62)
				for range 3 {
					var before, after runtime.MemStats
					runtime.GC()
					runtime.GC()
					runtime.ReadMemStats(&before)
					code := call()
					runtime.ReadMemStats(&after)
					least = min(least, after.TotalAlloc-before.TotalAlloc)
					if code != connect.CodeResourceExhausted && code != connect.CodeUnauthenticated {
						t.Fatalf("gzip bomb answered %v, want resource_exhausted or unauthenticated", code)
					}
				}
				if least >= budget {
					t.Errorf("refusing a %d MiB gzip bomb allocated %d KiB, want under %d KiB", bombBytes>>20, least>>10, budget>>10)
				}
				// With a token the message is read, up to the procedure's
				// limit, and refused there.
				req := rawRequest(ctx, t, env.URL, protocol, p.path, p.streaming, bomb)
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if code := answerCode(t, protocol, p.streaming, res); code != connect.CodeResourceExhausted {
					t.Errorf("authenticated gzip bomb answered %v, want resource_exhausted", code)
				}
			})
		}
	}
}

// bareServer is the real HTTP surface with a chat service that implements
// nothing: enough for tests of what happens before a handler runs.
type bareServer struct {
	URL string
	// Token is a valid access token for a random user.
	Token string
}

// startBare starts it with deps (Log, Verifier and Chat filled in) and lets
// adjust change the HTTP server before it serves.
func startBare(tb testing.TB, deps server.Deps, adjust func(*http.Server)) *bareServer {
	tb.Helper()
	key, err := auth.LoadOrCreateDevKey(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := auth.NewStaticVerifier(auth.Config{Issuer: apitest.Issuer}, key.JWKS())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(verifier.Close)
	token, err := key.Sign(apitest.Issuer, uuid.New(), time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	if deps.Chat == nil {
		deps.Chat = parleyv1connect.UnimplementedChatServiceHandler{}
	}
	deps.Log = slog.New(slog.DiscardHandler)
	deps.Verifier = verifier
	srv := server.NewHTTPServer(server.New(deps), deps.Log)
	if adjust != nil {
		adjust(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return &bareServer{URL: "http://" + ln.Addr().String(), Token: token}
}

// watchClose reads conn until the server closes it, and closes the
// returned channel then.
func watchClose(conn net.Conn) <-chan struct{} {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		io.Copy(io.Discard, conn)
	}()
	return closed
}

// trickle writes data a byte at a time, as a slowloris client does, until
// the server hangs up or budget runs out, and says whether it hung up. The
// pause between bytes is the client's slowness, not a wait on the server.
func trickle(conn net.Conn, closed <-chan struct{}, data []byte, budget time.Duration) bool {
	give := time.After(budget)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, b := range data {
		select {
		case <-closed:
			return true
		case <-give:
			return false
		case <-tick.C:
		}
		if _, err := conn.Write([]byte{b}); err != nil {
			return true
		}
	}
	select {
	case <-closed:
		return true
	case <-give:
		return false
	}
}

// TestTrickledHeadersAreCutOff: a client that sends its headers a byte at
// a time is disconnected: over HTTP/1.1 by ReadHeaderTimeout; over h2c,
// where Go has no per-stream header timeout, by IdleTimeout (a header
// block still arriving is no stream yet, so the connection counts as idle).
// The production values are checked, then shortened so the test is quick.
func TestTrickledHeadersAreCutOff(t *testing.T) {
	t.Parallel()
	srv := startBare(t, server.Deps{}, func(srv *http.Server) {
		if srv.ReadHeaderTimeout != 10*time.Second || srv.IdleTimeout != 120*time.Second {
			t.Errorf("ReadHeaderTimeout %s, IdleTimeout %s; want 10s and 120s", srv.ReadHeaderTimeout, srv.IdleTimeout)
		}
		srv.ReadHeaderTimeout, srv.IdleTimeout = 200*time.Millisecond, 200*time.Millisecond
	})
	t.Run("HTTP1", func(t *testing.T) {
		t.Parallel()
		conn := dialRaw(t, srv.URL)
		closed := watchClose(conn)
		request := "POST " + parleyv1connect.ChatServiceListConversationsProcedure + " HTTP/1.1\r\nHost: parley\r\nX-Slow: " + strings.Repeat("a", 500)
		if !trickle(conn, closed, []byte(request), 5*time.Second) {
			t.Error("a client trickling its headers was still connected after 5s")
		}
	})
	t.Run("H2C", func(t *testing.T) {
		t.Parallel()
		conn := dialRaw(t, srv.URL)
		closed := watchClose(conn)
		frame := func(typ, flags byte, stream uint32, payload ...byte) []byte {
			f := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(f[5:], stream)
			return append(f, payload...)
		}
		const settings, headers, continuation = 0x4, 0x1, 0x9
		start := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		start = append(start, frame(settings, 0, 0)...)
		// :method POST, :scheme http, :path / (HPACK static table), and no
		// END_HEADERS: the block goes on in CONTINUATION frames.
		start = append(start, frame(headers, 0, 1, 0x83, 0x86, 0x84)...)
		// A literal header "x-slow" whose 383-byte value comes one byte
		// per frame.
		start = append(start, frame(continuation, 0, 1, append([]byte{0x00, 6}, "x-slow\x7f\x80\x02"...)...)...)
		if _, err := conn.Write(start); err != nil {
			t.Fatal(err)
		}
		var slow []byte
		for range 383 {
			slow = append(slow, frame(continuation, 0, 1, 'a')...)
		}
		// One 10-byte frame every 20ms: a byte at a time would split the
		// frames, which is slower still but tests nothing more.
		give := time.After(5 * time.Second)
		for len(slow) > 0 {
			select {
			case <-closed:
				return
			case <-give:
				t.Fatal("a client trickling h2c header frames was still connected after 5s")
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := conn.Write(slow[:10]); err != nil {
				return
			}
			slow = slow[10:]
		}
		t.Fatal("the whole header block was accepted at a trickle")
	})
}

// TestSlowBodyIsCutOff: once its headers are in, a one-message call has
// BodyTimeout to send its body, or it answers deadline_exceeded; the
// deadline ends with the body, so a long answer stream is not cut. (The
// last part guards against regressions: no version of the code has cut
// streams, because today's net/http also lifts the deadline on HTTP/1.1.)
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	const bodyTimeout = 200 * time.Millisecond
	srv := startBare(t, server.Deps{BodyTimeout: bodyTimeout, Chat: slowStreamer{hold: 3 * bodyTimeout}}, nil)
	// Each part's own deadline, from when it runs: parallel parts may
	// wait for a free slot behind other tests.
	ctxFor := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("HTTP1Unary", func(t *testing.T) {
		t.Parallel()
		conn := dialRaw(t, srv.URL)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		// Authenticated: a call without a valid token is refused before
		// its body is read.
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: parley\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
			parleyv1connect.ChatServiceCreateConversationProcedure, srv.Token)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body within 5s: %v", err)
		}
		if code := answerCode(t, "connect+json", false, res); code != connect.CodeDeadlineExceeded {
			t.Errorf("stalled body answered %v, want deadline_exceeded", code)
		}
	})
	t.Run("H2CStream", func(t *testing.T) {
		t.Parallel()
		body, stall := io.Pipe()
		t.Cleanup(func() { stall.Close() })
		req, err := http.NewRequestWithContext(ctxFor(t), http.MethodPost, srv.URL+parleyv1connect.ChatServiceSendMessageProcedure, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc+proto")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Authorization", "Bearer "+srv.Token)
		go stall.Write([]byte{0, 0, 0, 0, 100, 0x12}) // 100 bytes promised, 1 sent
		res, err := apitest.H2CClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if code := answerCode(t, "grpc", true, res); code != connect.CodeDeadlineExceeded {
			t.Errorf("stalled body answered %v, want deadline_exceeded", code)
		}
	})
	for _, protocol := range apitest.Protocols {
		t.Run("LongStreamOutlivesTheDeadline/"+protocol, func(t *testing.T) {
			t.Parallel()
			c := parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor(protocol), srv.URL,
				append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer(srv.Token)))...)
			stream, err := c.SendMessage(ctxFor(t), connect.NewRequest(&parleyv1.SendMessageRequest{Content: "hi"}))
			if err != nil {
				t.Fatal(err)
			}
			var got int
			for stream.Receive() {
				got++
			}
			if err := stream.Err(); err != nil || got != 2 {
				t.Errorf("stream: %d events, err %v; want 2 and no error", got, err)
			}
		})
	}
}

// slowStreamer answers SendMessage with two events hold apart.
type slowStreamer struct {
	parleyv1connect.UnimplementedChatServiceHandler
	hold time.Duration
}

func (s slowStreamer) SendMessage(ctx context.Context, _ *connect.Request[parleyv1.SendMessageRequest], stream *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	if err := stream.Send(&parleyv1.SendMessageResponse{Seq: 1}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.hold):
	}
	return stream.Send(&parleyv1.SendMessageResponse{Seq: 2})
}

// dialRaw opens a TCP connection to the server behind baseURL.
func dialRaw(tb testing.TB, baseURL string) net.Conn {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// TestOversizedBodyIsNotRead: a body longer than its procedure's message
// may be is refused once the limit is passed, not read to its end (connect
// alone would read and discard all of it to keep the connection).
func TestOversizedBodyIsNotRead(t *testing.T) {
	t.Parallel()
	srv := startBare(t, server.Deps{}, nil)
	conn := dialRaw(t, srv.URL)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	const announced = 1 << 30
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: parley\r\nAuthorization: Bearer %s\r\nContent-Type: application/proto\r\nContent-Length: %d\r\n\r\n",
		parleyv1connect.ChatServiceGetConversationProcedure, srv.Token, announced)
	answered := make(chan connect.Code, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- connect.CodeUnknown
			return
		}
		answered <- answerCode(t, "connect+proto", false, res)
	}()
	chunk := make([]byte, 1<<20)
	var sent int
	for sent < announced {
		n, err := conn.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	if sent >= announced {
		t.Errorf("the server read all %d MiB of an oversized body", announced>>20)
	}
	if code := <-answered; code != connect.CodeResourceExhausted {
		t.Errorf("oversized body answered %v, want resource_exhausted", code)
	}
}

package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// envelopeProtocols are the ways a streaming request is enveloped: the
// content type each sends and the header naming its message compression.
var envelopeProtocols = []struct {
	name, contentType, encodingHeader string
}{
	{"connect+proto", "application/connect+proto", "Connect-Content-Encoding"},
	{"connect+json", "application/connect+json", "Connect-Content-Encoding"},
	{"grpc", "application/grpc+proto", "Grpc-Encoding"},
	{"grpcweb", "application/grpc-web+proto", "Grpc-Encoding"},
}

// envelopeCodes are the answers a malformed stream of requests may have,
// besides success.
var envelopeCodes = map[connect.Code]bool{
	0:                             true,
	connect.CodeInvalidArgument:   true, // a message that does not parse, or that Parley refuses
	connect.CodeNotFound:          true, // a conversation that is not the user's
	connect.CodeResourceExhausted: true, // a message over the procedure's limit
	connect.CodeUnimplemented:     true, // a compression Parley does not speak
}

// streamAnswer is the end of a streamed answer, however the protocol
// carries it.
type streamAnswer struct {
	code    connect.Code
	message string
}

// readStreamAnswer reads res to its end and returns its status, failing
// the test when the answer is not well formed for protocol: HTTP 200 with
// a grpc-status (in headers for a trailers-only answer, in trailers, or in
// gRPC-Web's trailer frame), or a Connect stream ending in its end-of-
// stream frame; every frame complete.
func readStreamAnswer(tb testing.TB, protocol string, res *http.Response) streamAnswer {
	tb.Helper()
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("%s: reading the answer: %v", protocol, err)
	}
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("%s: HTTP %d %q; a streaming protocol answers 200 and says the status in the stream", protocol, res.StatusCode, body)
	}
	var frames [][]byte
	var flags []byte
	for rest := body; len(rest) > 0; {
		if len(rest) < 5 {
			tb.Fatalf("%s: a truncated frame prefix at the end of %q", protocol, body)
		}
		size := binary.BigEndian.Uint32(rest[1:5])
		if uint64(len(rest)-5) < uint64(size) {
			tb.Fatalf("%s: a frame promises %d bytes, %d follow", protocol, size, len(rest)-5)
		}
		flags, frames = append(flags, rest[0]), append(frames, rest[5:5+size])
		rest = rest[5+size:]
	}
	grpcStatus := func(status, message string) streamAnswer {
		n, err := strconv.Atoi(status)
		if err != nil {
			tb.Fatalf("%s: grpc-status %q", protocol, status)
		}
		message, _ = url.PathUnescape(message)
		return streamAnswer{connect.Code(n), message}
	}
	switch protocol {
	case "grpc":
		if s := res.Header.Get("Grpc-Status"); s != "" {
			return grpcStatus(s, res.Header.Get("Grpc-Message"))
		}
		if s := res.Trailer.Get("Grpc-Status"); s != "" {
			return grpcStatus(s, res.Trailer.Get("Grpc-Message"))
		}
	case "grpcweb":
		if s := res.Header.Get("Grpc-Status"); s != "" {
			return grpcStatus(s, res.Header.Get("Grpc-Message"))
		}
		if len(frames) > 0 && flags[len(flags)-1]&0x80 != 0 {
			trailer := http.Header{}
			for _, line := range strings.Split(string(frames[len(frames)-1]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok {
					trailer.Add(strings.TrimSpace(k), strings.TrimSpace(v))
				}
			}
			if s := trailer.Get("Grpc-Status"); s != "" {
				return grpcStatus(s, trailer.Get("Grpc-Message"))
			}
		}
	default:
		if len(frames) > 0 && flags[len(flags)-1]&0x02 != 0 {
			var end struct {
				Error *struct {
					Code    connect.Code `json:"code"`
					Message string       `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(frames[len(frames)-1], &end); err != nil {
				tb.Fatalf("%s: end of stream %q: %v", protocol, frames[len(frames)-1], err)
			}
			if end.Error == nil {
				return streamAnswer{}
			}
			return streamAnswer{end.Error.Code, end.Error.Message}
		}
	}
	tb.Fatalf("%s: no status in the answer: headers %v, trailers %v, body %q", protocol, res.Header, res.Trailer, body)
	return streamAnswer{}
}

// frame envelopes msg with flags, declaring size bytes (len(msg) when
// negative).
func frame(flags byte, size int64, msg []byte) []byte {
	if size < 0 {
		size = int64(len(msg))
	}
	out := []byte{flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(size))
	return append(out, msg...)
}

func gzipped(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// FuzzEnvelope posts arbitrary bytes, with an arbitrary message
// compression named or none, as the body of a streaming request to chat's
// SendMessage (a server stream: its request is one enveloped message) over
// Connect's streaming protocol in binary and JSON, gRPC and gRPC-Web, or
// of a unary GetConversation over gRPC and gRPC-Web, to
// the service as production builds it, signed in. Every answer is well
// formed for its protocol (HTTP 200, the status in the stream), arrives
// within a few seconds, and has a code a client's mistake earns: never
// internal, which connect-go itself answers for an envelope it cannot
// read (a prefix or message cut short, unknown flags, the compressed flag
// without a compression) and Parley turns into invalid_argument (the
// body's envelopeCheck, and rpc.receiveError for streams).
// Goroutines left behind fail the package (TestMain's leak check).
func FuzzEnvelope(f *testing.F) {
	env := apitest.New(f, apitest.Options{})
	user := uuid.New()
	token := env.Token(f, user)
	conv, err := env.ChatClient(f, "connect+proto", user).CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "fuzz"}))
	if err != nil {
		f.Fatal(err)
	}
	valid := &parleyv1.SendMessageRequest{ConversationId: conv.Msg.GetConversation().GetId(), Content: "hello"}
	pb, err := proto.Marshal(valid)
	if err != nil {
		f.Fatal(err)
	}
	js, err := protojson.Marshal(valid)
	if err != nil {
		f.Fatal(err)
	}
	clients := map[string]*http.Client{}
	for _, p := range envelopeProtocols {
		clients[p.name] = apitest.HTTPClientFor(p.name)
	}
	f.Cleanup(func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	})
	for i, p := range envelopeProtocols {
		msg := pb
		if p.name == "connect+json" {
			msg = js
		}
		for _, seed := range []struct {
			encoding string
			body     []byte
		}{
			{"", frame(0, -1, msg)},                                 // valid: an answer streams
			{"", nil},                                               // no envelope at all
			{"", frame(0, -1, nil)},                                 // an empty message
			{"", frame(0, -1, msg)[:3]},                             // a prefix cut short
			{"", frame(0, -1, msg)[:len(msg)]},                      // a message cut short
			{"", frame(0, 1<<31, msg)},                              // a huge declared length
			{"", frame(0, 0xffffffff, nil)},                         // the largest declared length
			{"", frame(1, -1, msg)},                                 // compressed flag, no compression named
			{"gzip", frame(1, -1, gzipped(f, msg))},                 // valid, compressed
			{"gzip", frame(1, -1, msg)},                             // the flag, but not gzip
			{"br", frame(1, -1, msg)},                               // a compression not offered
			{"", frame(2, -1, []byte(`{}`))},                        // an end-of-stream frame from the client
			{"", frame(0x80, -1, []byte("grpc-status: 0\r\n"))},     // a trailer frame from the client
			{"", append(frame(0, -1, msg), frame(0, -1, msg)...)},   // two messages for a one-message call
			{"", append(frame(0, -1, msg), 0, 0)},                   // trailing garbage
			{"", frame(0, -1, bytes.Repeat([]byte{0xff}, 64))},      // a message that does not parse
			{"", frame(0, -1, []byte("\x0a\x03\xff\xfe\xfd\x12a"))}, // invalid UTF-8
		} {
			f.Add(uint8(i), seed.encoding, seed.body)
			if p.name == "grpc" || p.name == "grpcweb" {
				f.Add(uint8(i)|0x80, seed.encoding, seed.body)
			}
		}
	}
	f.Fuzz(func(t *testing.T, pick uint8, encoding string, body []byte) {
		p := envelopeProtocols[int(pick&0x7f)%len(envelopeProtocols)]
		procedure := parleyv1connect.ChatServiceSendMessageProcedure
		if pick&0x80 != 0 && (p.name == "grpc" || p.name == "grpcweb") {
			// A unary call: its request is read before any interceptor
			// runs (TestUnaryEnvelopes). A SendMessageRequest is a valid
			// GetConversationRequest with an unknown field.
			procedure = parleyv1connect.ChatServiceGetConversationProcedure
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.URL+procedure, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", p.contentType)
		req.Header.Set("Authorization", "Bearer "+token)
		if p.name == "grpc" {
			req.Header.Set("Te", "trailers")
		}
		if p.name != "grpc" && p.name != "grpcweb" {
			req.Header.Set("Connect-Protocol-Version", "1")
		}
		// Header values cannot hold every byte; what net/http refuses to
		// send is no request of the server's.
		if encoding != "" && validHeaderValue(encoding) {
			req.Header.Set(p.encodingHeader, encoding)
		}
		start := time.Now()
		res, err := clients[p.name].Do(req)
		if err != nil {
			t.Fatalf("%s with %q: no answer: %v", p.name, body, err)
		}
		answer := readStreamAnswer(t, p.name, res)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: answered in %v", p.name, took)
		}
		if envelopeCodes[answer.code] {
			return
		}
		t.Fatalf("%s, encoding %q, body %q: %v %q", p.name, encoding, body, answer.code, answer.message)
	})
}

// validHeaderValue reports whether net/http sends v as a header value.
func validHeaderValue(v string) bool {
	for i := range len(v) {
		if c := v[i]; c < 0x20 || c == 0x7f || c == ' ' {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

// TestUnaryEnvelopes: a unary call over gRPC or gRPC-Web whose envelope
// is malformed answers invalid_argument, saying what is wrong, where
// connect-go alone answers internal (a unary call's request is read
// before any interceptor runs); well-formed ones are served.
func TestUnaryEnvelopes(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	user := uuid.New()
	token := env.Token(t, user)
	conv, err := env.ChatClient(t, "connect+proto", user).CreateConversation(t.Context(), connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "unary"}))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := proto.Marshal(&parleyv1.GetConversationRequest{ConversationId: conv.Msg.GetConversation().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, encoding string
		body           []byte
		code           connect.Code
		message        string // in the answer's message
	}{
		{"Valid", "", frame(0, -1, msg), 0, ""},
		{"Compressed", "gzip", frame(1, -1, gzipped(t, msg)), 0, ""},
		{"PrefixCut", "", frame(0, -1, msg)[:3], connect.CodeInvalidArgument, "ends 3 bytes into a message's 5-byte envelope prefix"},
		{"MessageCut", "", frame(0, -1, msg)[:len(msg)], connect.CodeInvalidArgument, "ends 5 bytes before the end of a message"},
		{"CompressedFlagNoCompression", "", frame(1, -1, msg), connect.CodeInvalidArgument, "names no compression in Grpc-Encoding"},
		{"CompressedFlagIdentity", "identity", frame(1, -1, msg), connect.CodeInvalidArgument, "names no compression"},
		{"EndStreamFlag", "", frame(2, -1, msg), connect.CodeInvalidArgument, "envelope flags 0x02"},
		{"TrailerFlag", "", frame(0x80, -1, []byte("a: b\r\n")), connect.CodeInvalidArgument, "envelope flags 0x80"},
		{"TwoMessages", "", append(frame(0, -1, msg), frame(0, -1, msg)...), connect.CodeUnimplemented, "multiple messages"},
	}
	for _, p := range envelopeProtocols {
		if p.name != "grpc" && p.name != "grpcweb" {
			continue // Connect's unary protocol sends no envelope
		}
		client := apitest.HTTPClientFor(p.name)
		t.Cleanup(client.CloseIdleConnections)
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, env.URL+parleyv1connect.ChatServiceGetConversationProcedure, bytes.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", p.contentType)
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Te", "trailers")
				if tt.encoding != "" {
					req.Header.Set(p.encodingHeader, tt.encoding)
				}
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				answer := readStreamAnswer(t, p.name, res)
				if answer.code != tt.code || !strings.Contains(answer.message, tt.message) {
					t.Errorf("%v %q, want %v with %q", answer.code, answer.message, tt.code, tt.message)
				}
			})
		}
	}
}

package server

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// What a request may cost.
//
// Calls without a valid token cost their headers only: authentication runs
// as a request gate, before connect reads the message (headerGate). What a
// procedure's read limit lets through is what any signed-in caller, and
// anyone calling the public procedures (health, reflection), can make the
// server buffer, so each procedure's limit is sized to the largest request
// it can legitimately carry, in the costliest encoding: JSON, where one
// byte of text may take six ("\u0001"). The limit applies to the message on
// the wire and again once it is inflated (connect.WithReadMaxBytes checks
// both); inflating stops at the limit (cappedGzip); and the body of a
// one-message call may be no longer than its message, and must arrive in
// time (limitBodies).
//
// An artifact's content (1 MiB) is the largest: its create and update
// procedures get about 6 MiB, and no other. Content that needs more
// (attachments, say) should get its own procedure with its own limit, up
// to 10 MiB, rather than raise these.
const (
	// jsonExpansion is how many bytes JSON may spend on one byte of a
	// string: \u00XX for a control character.
	jsonExpansion = 6
	// framingBytes covers field names, ids and punctuation around the
	// strings counted below.
	framingBytes = 1 << 10

	// smallRequestBytes bounds requests made of ids, page tokens and model
	// names: every procedure not listed in requestLimits, health and
	// reflection included.
	smallRequestBytes = 16 << 10
	// promptRequestBytes bounds a conversation's settings: its system
	// prompt, title, model and request id (about 199 KiB).
	promptRequestBytes = jsonExpansion*(chat.MaxSystemPromptBytes+utf8.UTFMax*chat.MaxTitleRunes+chat.MaxModelBytes+chat.MaxRequestIDBytes) + framingBytes
	// contentRequestBytes bounds a chat message: its content, model and
	// client message id (about 602 KiB).
	contentRequestBytes = jsonExpansion*(chat.MaxContentBytes+chat.MaxModelBytes+chat.MaxRequestIDBytes) + framingBytes
	// artifactRequestBytes bounds an artifact's create or update: its
	// content, title, language and request id (about 6 MiB).
	artifactRequestBytes = jsonExpansion*(artifact.MaxContentBytes+utf8.UTFMax*artifact.MaxTitleRunes+artifact.MaxLanguageBytes+artifact.MaxRequestIDBytes) + framingBytes

	// attachmentRequestBytes bounds a chat message with its attachments
	// (about 10 MiB): the message's own limit plus the most attachment
	// content a message may carry (attachment.MaxRequestBytes, which
	// configuration can lower but not raise) as base64, the costlier
	// encoding of bytes (JSON's), with room for each file's name.
	attachmentRequestBytes = contentRequestBytes + (attachment.MaxRequestBytes+2)/3*4 +
		attachment.MaxCountCeiling*(jsonExpansion*attachment.MaxNameBytes+framingBytes)

	// envelopeBytes is the prefix gRPC, gRPC-Web and Connect streams put
	// before each message: a flag byte and a four-byte length.
	envelopeBytes = 5
)

// DefaultBodyTimeout is how long a client may take to send the body of a
// one-message call once its headers have arrived (Deps.BodyTimeout).
// Bodies are at most a few hundred KiB but for artifacts' (6 MiB at most,
// 1 MiB usually): 30 seconds is 35 KiB/s for 1 MiB, slower than a poor
// mobile link.
const DefaultBodyTimeout = 30 * time.Second

// requestLimits are the procedures that carry more than ids.
var requestLimits = map[string]int{
	parleyv1connect.ChatServiceCreateConversationProcedure: promptRequestBytes,
	parleyv1connect.ChatServiceUpdateConversationProcedure: promptRequestBytes,
	parleyv1connect.ChatServiceSendMessageProcedure:        attachmentRequestBytes,
	parleyv1connect.ChatServiceEditMessageProcedure:        attachmentRequestBytes,
	parleyv1connect.ArtifactServiceCreateArtifactProcedure: artifactRequestBytes,
	parleyv1connect.ArtifactServiceUpdateArtifactProcedure: artifactRequestBytes,
	// Preferences: a system prompt of 8000 characters (at most 32 KiB, as
	// a conversation's), a display name and a model.
	parleyv1connect.UserServiceUpdateMeProcedure: promptRequestBytes,
}

// readLimit is the most bytes procedure's request message may take.
func readLimit(procedure string) int {
	if n, ok := requestLimits[procedure]; ok {
		return n
	}
	return smallRequestBytes
}

// requestGuards gives every procedure its read limit and decompression cap,
// and records, for limitBodies, the procedures whose body is one message.
type requestGuards struct {
	// oneMessage maps the path of each procedure whose request is a single
	// message (unary and server streams) to its read limit. It is filled
	// while the handlers are built, before the server serves.
	oneMessage map[string]int
}

func newRequestGuards() *requestGuards {
	return &requestGuards{oneMessage: map[string]int{}}
}

// option is the handler option that applies the guards; pass it to every
// connect handler.
func (g *requestGuards) option() connect.HandlerOption {
	return connect.WithConditionalHandlerOptions(func(spec connect.Spec) []connect.HandlerOption {
		limit := readLimit(spec.Procedure)
		if spec.StreamType&connect.StreamTypeClient == 0 {
			g.oneMessage[spec.Procedure] = limit
		}
		return []connect.HandlerOption{
			connect.WithReadMaxBytes(limit),
			connect.WithCompression("gzip",
				func() connect.Decompressor { return &cappedGzip{max: int64(limit)} },
				newGzipCompressor),
		}
	})
}

// newGzipCompressor compresses responses at gzip.BestSpeed, as nginx does
// by default, instead of connect's gzip.DefaultCompression. The messages
// worth compressing here (WithCompressMinBytes) are a few KiB, such as an
// answer's completed event with its whole text, where level 6 costs about
// twice level 1's CPU for a few percent of size: at 2,000 answers
// finishing at once, level 6's compressor was a tenth of the server's
// CPU (BENCHMARKS.md, CPU per relayed delta).
func newGzipCompressor() connect.Compressor {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // a valid level cannot fail
	return w
}

// cappedGzip is connect's gzip decompressor with a ceiling. connect stops
// buffering an inflated message at the read limit, but then inflates the
// rest of it to report its size: a 10 KiB bomb costs 10 MiB of inflating,
// and the largest message the limit lets through could inflate a thousand
// times over. This one fails as soon as it has produced more than max
// bytes, with the error connect would have given.
type cappedGzip struct {
	gzip.Reader
	max, n int64
}

// Read implements connect.Decompressor.
func (c *cappedGzip) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, c.tooLarge()
	}
	n, err := c.Reader.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, c.tooLarge()
	}
	return n, err
}

func (c *cappedGzip) tooLarge() error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("message is larger than the %d bytes this procedure accepts, once decompressed", c.max))
}

// Reset implements connect.Decompressor.
func (c *cappedGzip) Reset(r io.Reader) error {
	c.n = 0
	return c.Reader.Reset(r)
}

// limitBodies bounds the bodies of one-message calls before connect reads
// them: no longer than their message may be (connect would otherwise read
// and discard whatever an oversized call sends, however long), and sent
// within timeout of the headers (a client sending a byte a second would
// otherwise hold a handler for as long as it likes).
//
// http.Server's ReadTimeout cannot do the latter: it runs from the first
// byte of the request to the end of the handler's reads, and over HTTP/1.1
// its deadline stays on the connection, so when the background read that
// watches for a disconnect hits it the request's context is canceled, and
// with it a Connect stream still sending an answer. This deadline is per
// request (http.ResponseController), and is lifted once the body has
// arrived. Client-streaming calls (reflection) are left alone: their body
// lasts as long as the call.
func limitBodies(h http.Handler, oneMessage map[string]int, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, ok := oneMessage[r.URL.Path]
		if !ok || r.Method != http.MethodPost || r.ContentLength == 0 {
			// Without a body net/http is already watching the connection
			// for a disconnect, and a deadline set now would cut that watch
			// short (golang/go#70834).
			h.ServeHTTP(w, r)
			return
		}
		limitBody(w, r, limit, timeout)
		h.ServeHTTP(w, r)
	})
}

// limitBody replaces r's body with one that enforces limit and timeout,
// and checks gRPC framing. It is apart from limitBodies so that streams,
// which last an answer, carry none of its locals.
func limitBody(w http.ResponseWriter, r *http.Request, limit int, timeout time.Duration) {
	body := &deadlineBody{
		ReadCloser: http.MaxBytesReader(w, r.Body, int64(limit)+envelopeBytes),
		rc:         http.NewResponseController(w),
		timeout:    timeout,
	}
	// Only a ResponseWriter that is not net/http's refuses; the size
	// limit still holds without the deadline.
	body.armed = body.rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	r.Body = body
	if encodingHeader, ok := envelopedEncoding(r.Header.Get("Content-Type")); ok {
		r.Body = &envelopeCheck{ReadCloser: body, encodingHeader: encodingHeader, encoding: r.Header.Get(encodingHeader)}
	}
}

// deadlineBody turns a body read that outlives its deadline into an error
// a client can act on, and lifts the deadline once the body has arrived.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	armed   bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && b.armed:
		// The rest of the call may last minutes (a streamed answer). Go
		// 1.26's HTTP/1.1 server also lifts it when the body ends, but
		// that is an implementation detail; HTTP/2 keeps a stream's timer.
		b.rc.SetReadDeadline(time.Time{})
		b.armed = false
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("the request body did not arrive within %s of its headers", b.timeout))
	}
	return n, err
}

// envelopedEncoding reports whether a request of contentType frames its
// messages in envelopes (gRPC, gRPC-Web, Connect's streaming protocol),
// and names the header that says their compression.
func envelopedEncoding(contentType string) (encodingHeader string, ok bool) {
	// Media types are case-insensitive; connect-go lowercases them too.
	contentType = strings.ToLower(contentType)
	switch {
	case strings.HasPrefix(contentType, "application/grpc-web-text"):
		// Base64 of envelopes, which connect-go does not serve (415): the
		// bytes read are not the frames.
		return "", false
	case strings.HasPrefix(contentType, "application/grpc"): // and grpc-web
		return "Grpc-Encoding", true
	case strings.HasPrefix(contentType, "application/connect+"):
		return "Connect-Content-Encoding", true
	}
	return "", false
}

// envelopeCheck follows the envelopes of a request body as connect reads
// them (a 5-byte prefix: flags, then the message's length; then the
// message) and fails a read, with invalid_argument and what is wrong, when
// the body ends inside an envelope, or a prefix carries flags a request
// may not (only 1, compressed, is a request's) or the compressed flag
// without a compression named. connect-go answers those with internal,
// as if the server were at fault, and on a unary call no interceptor sees
// the error (streams map it in rpc.receiveError). A prefix is held back
// until it is whole, so connect never reads a bad one.
type envelopeCheck struct {
	io.ReadCloser
	encodingHeader string // the header naming the messages' compression
	encoding       string // its value ("" for none)

	prefix [envelopeBytes]byte // the prefix being read
	have   int                 // bytes of it read
	held   int                 // bytes of it not yet handed on
	left   int64               // message bytes still to come
	err    error               // the failure, once found
}

func (c *envelopeCheck) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.held > 0 {
		// A whole, valid prefix waiting to be handed on.
		n := copy(p, c.prefix[envelopeBytes-c.held:])
		c.held -= n
		return n, nil
	}
	if c.left > 0 {
		if int64(len(p)) > c.left {
			p = p[:c.left]
		}
		n, err := c.ReadCloser.Read(p)
		c.left -= int64(n)
		if err == io.EOF && c.left > 0 {
			err = c.fail("the request body ends %d bytes before the end of a message that declares %d", c.left, c.declared())
		}
		if err == io.EOF && n > 0 {
			err = nil // the end is reported at the next read
		}
		return n, err
	}
	// Between messages: read the next prefix whole before handing it on.
	for c.have < envelopeBytes {
		n, err := c.ReadCloser.Read(c.prefix[c.have:])
		c.have += n
		if c.have == envelopeBytes {
			break
		}
		switch {
		case err == io.EOF && c.have == 0:
			return 0, io.EOF // a clean end, between messages
		case err == io.EOF:
			return 0, c.fail("the request body ends %d bytes into a message's %d-byte envelope prefix", c.have, envelopeBytes)
		case err != nil:
			return 0, err
		}
	}
	switch flags := c.prefix[0]; {
	case flags&^1 != 0:
		return 0, c.fail("envelope flags %#02x are not a request message's: 0 (plain) or 1 (compressed)", flags)
	case flags&1 != 0 && (c.encoding == "" || c.encoding == "identity"):
		return 0, c.fail("the message is flagged compressed, but the request names no compression in %s", c.encodingHeader)
	}
	c.have, c.held, c.left = 0, envelopeBytes, int64(c.declared())
	return c.Read(p)
}

// declared is the message length the current prefix declares.
func (c *envelopeCheck) declared() uint32 { return binary.BigEndian.Uint32(c.prefix[1:]) }

func (c *envelopeCheck) fail(format string, args ...any) error {
	c.err = connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("malformed request: "+format, args...))
	return c.err
}

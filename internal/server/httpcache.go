package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
)

// HTTP caching of Connect GET reads. connect-go serves a unary RPC marked
// NO_SIDE_EFFECTS over GET (the request in the query string) and turns a
// handler's connect.NewNotModifiedError into a 304 with no body; gRPC,
// gRPC-Web and Connect POST never see either. So the validator is an
// interceptor, not an HTTP middleware: it sees the response message before
// it is encoded, nothing is buffered, and streams (never GET) pass by.
//
// The ETag is a hash of the response itself (its deterministic protobuf
// encoding and the compressions the client accepts), not of versions or
// per-instance state: every instance computes the same tag for the same
// data, and a write anywhere changes the next read's tag at once, with no
// invalidation to send. The read still runs in full; what a 304 saves is
// encoding, compressing and sending the body, and the client's decoding.

// cacheControlPrivate is what a GET read answers with unless its handler set
// its own Cache-Control (a public share sets one for CDNs): browsers may
// keep the answer, but must ask again (with If-None-Match) before using it,
// and shared caches must not keep it.
const cacheControlPrivate = "private, no-cache"

// httpCache adds an ETag and Cache-Control to Connect GET reads and answers
// a matching If-None-Match with 304 Not Modified.
type httpCache struct{}

func (httpCache) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.HTTPMethod() != http.MethodGet {
			return next(ctx, req)
		}
		res, err := next(ctx, req)
		if err != nil {
			return res, err
		}
		msg, ok := res.Any().(proto.Message)
		if !ok {
			return res, nil
		}
		h := res.Header()
		if h.Get("Etag") == "" {
			// A unary Connect GET negotiates its response's compression
			// with Accept-Encoding (Connect-Accept-Encoding is streams').
			tag, err := etagOf(msg, req.Header().Get("Accept-Encoding")+";"+req.Header().Get("Connect-Accept-Encoding"))
			if err != nil {
				return res, nil // answered without a validator
			}
			h.Set("Etag", tag)
		}
		if h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", cacheControlPrivate)
		}
		if etagMatches(req.Header().Get("If-None-Match"), h.Get("Etag")) {
			// The 304 carries the headers a 200 would (RFC 9110 §15.4.5).
			notModified := http.Header{}
			for _, name := range []string{"Etag", "Cache-Control", "Expires"} {
				if v := h.Values(name); len(v) > 0 {
					notModified[name] = v
				}
			}
			return nil, connect.NewNotModifiedError(notModified)
		}
		return res, nil
	}
}

func (httpCache) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (httpCache) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// etagOf is a strong entity tag for msg as sent to a client that accepts
// the compressions in acceptEncoding (the body differs with them; connect
// sets Vary accordingly).
func etagOf(msg proto.Message, acceptEncoding string) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	sum.Write(b)
	sum.Write([]byte{0})
	sum.Write([]byte(acceptEncoding))
	// 128 bits of SHA-256 are plenty to tell two versions of one resource apart.
	return `"` + base64.RawURLEncoding.EncodeToString(sum.Sum(nil)[:16]) + `"`, nil
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 §13.1.2):
// "*" or any listed tag equal to etag, ignoring W/ prefixes.
func etagMatches(ifNoneMatch, etag string) bool {
	if ifNoneMatch == "" || etag == "" {
		return false
	}
	etag = strings.TrimPrefix(etag, "W/")
	for _, candidate := range strings.Split(ifNoneMatch, ",") {
		candidate = strings.TrimSpace(candidate)
		if candidate == "*" || strings.TrimPrefix(candidate, "W/") == etag {
			return true
		}
	}
	return false
}

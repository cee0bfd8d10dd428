package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect"
)

// errHeadersOnly is what a gate check gets if it tries to use the message
// stream: gates run before there is one.
var errHeadersOnly = errors.New("server: a request gate sees headers only")

// errGateConn fails a call whose gate check replaced the conn it was given.
var errGateConn = errors.New("server: a request gate check replaced the call's conn")

// headerGate runs interceptors that decide on headers alone (the bad-token
// flood limit, authentication) as a connect request gate: before connect
// reads, inflates and parses the request message, which it does for unary
// calls before the first interceptor runs. Run as interceptors, they let
// an anonymous caller make the server buffer a message of the procedure's
// full read limit; run here, a call that fails them costs its headers.
//
// The checks keep their interceptor form (and internal/auth stays the one
// place that authenticates): each runs its WrapStreamingHandler against a
// conn that has the call's spec, peer and headers and no stream. The
// context a passing call leaves with (carrying the verified claims) is the
// one the interceptors and the handler get. Connect sends a gate's error
// without running the interceptors, so the access log line for a refused
// call is written here.
func headerGate(access *accessLog, checks ...connect.Interceptor) connect.RequestGateFunc {
	// The chain is built once; the call that passes it leaves its context
	// on the conn, which the checks hand on as they got it.
	run := connect.StreamingHandlerFunc(func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		c, ok := conn.(*headersOnlyConn)
		if !ok {
			return errGateConn
		}
		c.passed = ctx
		return nil
	})
	for i := len(checks) - 1; i >= 0; i-- {
		run = checks[i].WrapStreamingHandler(run)
	}
	return func(ctx context.Context, spec connect.Spec, peer connect.Peer, header http.Header) (context.Context, error) {
		start := time.Now()
		conn := &headersOnlyConn{spec: spec, peer: peer, header: header}
		err := run(ctx, conn)
		if err == nil {
			return conn.passed, nil
		}
		// Headers a check set for the answer (Retry-After) travel with
		// the error: as headers for Connect, trailers for gRPC.
		var ce *connect.Error
		if errors.As(err, &ce) {
			for k, v := range conn.response {
				if ce.Meta().Get(k) == "" {
					ce.Meta()[k] = v
				}
			}
		}
		if access != nil {
			access.record(ctx, spec.Procedure, peer.Protocol, &accessInfo{}, start, err)
		}
		return nil, err
	}
}

// headersOnlyConn is a call as a gate sees it: headers, no messages. Its
// response headers and trailers are made when a check first asks for them.
type headersOnlyConn struct {
	spec              connect.Spec
	peer              connect.Peer
	header            http.Header
	response, trailer http.Header
	passed            context.Context // the context a passing call leaves with
}

func (c *headersOnlyConn) Spec() connect.Spec         { return c.spec }
func (c *headersOnlyConn) Peer() connect.Peer         { return c.peer }
func (c *headersOnlyConn) RequestHeader() http.Header { return c.header }
func (c *headersOnlyConn) ResponseHeader() http.Header {
	if c.response == nil {
		c.response = http.Header{}
	}
	return c.response
}

func (c *headersOnlyConn) ResponseTrailer() http.Header {
	if c.trailer == nil {
		c.trailer = http.Header{}
	}
	return c.trailer
}
func (c *headersOnlyConn) Receive(any) error { return errHeadersOnly }
func (c *headersOnlyConn) Send(any) error    { return errHeadersOnly }

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
	return func(ctx context.Context, spec connect.Spec, peer connect.Peer, header http.Header) (context.Context, error) {
		start := time.Now()
		var passed context.Context
		run := connect.StreamingHandlerFunc(func(ctx context.Context, _ connect.StreamingHandlerConn) error {
			passed = ctx
			return nil
		})
		for i := len(checks) - 1; i >= 0; i-- {
			run = checks[i].WrapStreamingHandler(run)
		}
		conn := &headersOnlyConn{spec: spec, peer: peer, header: header, response: http.Header{}, trailer: http.Header{}}
		err := run(ctx, conn)
		if err == nil {
			return passed, nil
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

// headersOnlyConn is a call as a gate sees it: headers, no messages.
type headersOnlyConn struct {
	spec              connect.Spec
	peer              connect.Peer
	header            http.Header
	response, trailer http.Header
}

func (c *headersOnlyConn) Spec() connect.Spec           { return c.spec }
func (c *headersOnlyConn) Peer() connect.Peer           { return c.peer }
func (c *headersOnlyConn) RequestHeader() http.Header   { return c.header }
func (c *headersOnlyConn) ResponseHeader() http.Header  { return c.response }
func (c *headersOnlyConn) ResponseTrailer() http.Header { return c.trailer }
func (c *headersOnlyConn) Receive(any) error            { return errHeadersOnly }
func (c *headersOnlyConn) Send(any) error               { return errHeadersOnly }

package rpc

import (
	"context"
	"net/http"

	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// connect flushes the response after every message a stream sends. For a
// follower that is behind (the answer's events came faster than the client
// read them), each flush is a hand-off to the HTTP/2 connection's writer
// goroutine and a frame of its own, per delta. The gate lets the relay
// hold those flushes while the next event is already waiting, so the
// messages of a burst go out in a few frames; it flushes as soon as the
// follower has caught up, so no event waits for another. The messages,
// their order and their seq are the same either way.

// flushGate is a ResponseWriter whose Flush the relay can hold.
type flushGate struct {
	http.ResponseWriter
	flusher http.Flusher
	hold    bool // set by the relay while its next event is ready
}

// Flush implements http.Flusher: it flushes unless the relay holds it.
func (g *flushGate) Flush() {
	if !g.hold {
		g.flusher.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (g *flushGate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

type flushGateKey struct{}

// gatedProcedures are the procedures whose responses relay events.
var gatedProcedures = map[string]bool{
	parleyv1connect.ChatServiceSendMessageProcedure:       true,
	parleyv1connect.ChatServiceResumeGenerationProcedure:  true,
	parleyv1connect.ChatServiceRegenerateMessageProcedure: true,
	parleyv1connect.ChatServiceEditMessageProcedure:       true,
}

// GateFlushes wraps the chat service's handler so that its event streams
// (relay) can hold connect's flushes while a burst of events is sent;
// every other procedure passes through untouched.
func GateFlushes(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok || !gatedProcedures[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		g := &flushGate{ResponseWriter: w, flusher: f}
		h.ServeHTTP(g, r.WithContext(context.WithValue(r.Context(), flushGateKey{}, g)))
	})
}

// flushGateOf returns the gate of the stream of ctx, nil outside
// GateFlushes.
func flushGateOf(ctx context.Context) *flushGate {
	g, _ := ctx.Value(flushGateKey{}).(*flushGate)
	return g
}

// setHold holds or releases the gate's flushes; a nil gate does nothing.
func (g *flushGate) setHold(hold bool) {
	if g != nil {
		g.hold = hold
	}
}

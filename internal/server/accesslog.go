package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/plan"
)

// accessInfo is filled in by inner interceptors for the access log, which
// runs outside them and cannot see their contexts.
type accessInfo struct {
	userID uuid.UUID
	start  time.Time // streaming calls only (WrapStreamingHandler)
}

type accessInfoKey struct{}

// accessLog writes one line per RPC: procedure, protocol, code, duration
// and user id. Never a token or message content.
type accessLog struct{ log *slog.Logger }

func newAccessLog(log *slog.Logger) *accessLog { return &accessLog{log: log} }

func (a *accessLog) record(ctx context.Context, procedure, protocol string, info *accessInfo, start time.Time, err error) {
	code := "ok"
	level := slog.LevelInfo
	if err != nil {
		c := connect.CodeOf(err)
		code = c.String()
		if c == connect.CodeInternal || c == connect.CodeUnknown || c == connect.CodeDataLoss {
			level = slog.LevelError
		}
		var ce *connect.Error
		if !errors.As(err, &ce) {
			level = slog.LevelError
		}
	}
	if !a.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("procedure", procedure),
		slog.String("protocol", protocol),
		slog.String("code", code),
		slog.Duration("duration", time.Since(start)),
	}
	if info.userID != uuid.Nil {
		attrs = append(attrs, slog.String("user_id", info.userID.String()))
	}
	a.log.LogAttrs(ctx, level, "rpc", attrs...)
}

func (a *accessLog) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start, info := time.Now(), &accessInfo{}
		res, err := next(context.WithValue(ctx, accessInfoKey{}, info), req)
		a.record(ctx, req.Spec().Procedure, req.Peer().Protocol, info, start, err)
		return res, err
	}
}

func (a *accessLog) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *accessLog) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		// A stream's handler waits under this frame for the whole answer:
		// the start time is kept on the heap, with the rest of the line.
		info := &accessInfo{start: time.Now()}
		err := next(context.WithValue(ctx, accessInfoKey{}, info), conn)
		a.recordStream(ctx, conn, info, err)
		return err
	}
}

// recordStream is record for a streaming call.
func (a *accessLog) recordStream(ctx context.Context, conn connect.StreamingHandlerConn, info *accessInfo, err error) {
	a.record(ctx, conn.Spec().Procedure, conn.Peer().Protocol, info, info.start, err)
}

// userCapture runs after authentication: it hands the user id to the
// access log and what plans depend on (an anonymous sign-in) to the
// context, before any limit is checked.
type userCapture struct{}

func (userCapture) capture(ctx context.Context) context.Context {
	claims, ok := auth.ClaimsFrom(ctx)
	if !ok {
		return ctx
	}
	if info, ok := ctx.Value(accessInfoKey{}).(*accessInfo); ok {
		info.userID = claims.UserID
	}
	return plan.WithCaller(ctx, plan.Caller{Anonymous: claims.IsAnonymous})
}

func (u userCapture) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		return next(u.capture(ctx), req)
	}
}

func (userCapture) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (u userCapture) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(u.capture(ctx), conn)
	}
}

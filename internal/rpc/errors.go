// Package rpc holds Parley's Connect handlers: each decodes a request,
// calls a domain service and encodes the answer. Errors leave through one
// table (codes) that maps application errors to Connect codes.
package rpc

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/apperr"
)

// codes is the one table from application error codes to Connect codes.
var codes = map[apperr.Code]connect.Code{
	apperr.Invalid:            connect.CodeInvalidArgument,
	apperr.NotFound:           connect.CodeNotFound,
	apperr.Conflict:           connect.CodeAlreadyExists,
	apperr.FailedPrecondition: connect.CodeFailedPrecondition,
	apperr.Aborted:            connect.CodeAborted,
	apperr.Unauthenticated:    connect.CodeUnauthenticated,
	apperr.PermissionDenied:   connect.CodePermissionDenied,
	apperr.ResourceExhausted:  connect.CodeResourceExhausted,
	apperr.Unavailable:        connect.CodeUnavailable,
	apperr.DeadlineExceeded:   connect.CodeDeadlineExceeded,
	apperr.Canceled:           connect.CodeCanceled,
	apperr.Internal:           connect.CodeInternal,
}

// ToConnect turns any error a handler returns into a *connect.Error that is
// safe to show a client. Application errors keep their message; anything
// else is logged in full and answered as a bare "internal error".
func ToConnect(ctx context.Context, log *slog.Logger, procedure string, err error) error {
	if err == nil {
		return nil
	}
	var connectErr *connect.Error
	if errors.As(err, &connectErr) {
		return err
	}
	var appErr *apperr.Error
	if !errors.As(err, &appErr) || appErr.Code == apperr.Internal {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the request's deadline passed"))
		}
		log.ErrorContext(ctx, "internal error", "procedure", procedure, "err", err)
		msg := "internal error"
		if appErr != nil && appErr.Message != "" {
			msg = appErr.Message
		}
		return connect.NewError(connect.CodeInternal, errors.New(msg))
	}
	code, ok := codes[appErr.Code]
	if !ok {
		code = connect.CodeInternal
	}
	if appErr.Err != nil {
		// The cause helps operators; the client gets the safe message only.
		log.DebugContext(ctx, "request failed", "procedure", procedure, "code", code.String(), "err", appErr.Err)
	}
	msg := appErr.Message
	if appErr.Field != "" {
		msg = appErr.Field + ": " + msg
	}
	out := connect.NewError(code, errors.New(msg))
	if appErr.RetryAfter > 0 {
		// Travels as an HTTP header for Connect and as metadata for gRPC.
		out.Meta().Set("Retry-After", strconv.Itoa(appErr.RetryAfter))
	}
	return out
}

// NewErrorInterceptor applies ToConnect to every unary and streaming
// handler, so handlers can return domain errors as they are.
func NewErrorInterceptor(log *slog.Logger) connect.Interceptor {
	return &errorInterceptor{log: log}
}

type errorInterceptor struct{ log *slog.Logger }

func (i *errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		return res, ToConnect(ctx, i.log, req.Spec().Procedure, err)
	}
}

func (i *errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		// The stream's handler waits under this frame for the whole
		// answer: it keeps nothing of its own across next (relay says why).
		if err := next(ctx, conn); err != nil {
			return i.streamError(ctx, conn, err)
		}
		return nil
	}
}

// streamError is ToConnect for a streaming handler's error.
func (i *errorInterceptor) streamError(ctx context.Context, conn connect.StreamingHandlerConn, err error) error {
	return ToConnect(ctx, i.log, conn.Spec().Procedure, err)
}

package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
)

// unauthenticatedMessage is the whole answer a client gets, whatever the
// reason: telling a caller which check failed helps an attacker more than a
// legitimate client, whose fix is always "sign in again". The reason is logged.
const unauthenticatedMessage = "missing or invalid access token"

// errNoToken is logged when the Authorization header is absent or not Bearer.
var errNoToken = errors.New("no bearer token")

// NewInterceptor returns a server-side Connect interceptor that requires a
// valid "Authorization: Bearer <jwt>" on every procedure except those for
// which isPublic returns true (health, reflection). isPublic may be nil, which
// makes every procedure private. On success handlers find the claims with
// ClaimsFrom or UserID; on failure the client gets CodeUnauthenticated with
// one generic message, and log gets the reason (never the token). It covers
// unary and all streaming handlers, and passes client-side calls through.
func NewInterceptor(v *Verifier, isPublic func(procedure string) bool, log *slog.Logger) connect.Interceptor {
	if isPublic == nil {
		isPublic = func(string) bool { return false }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &interceptor{verifier: v, isPublic: isPublic, log: log}
}

type interceptor struct {
	verifier *Verifier
	isPublic func(procedure string) bool
	log      *slog.Logger
}

// WrapUnary implements connect.Interceptor.
func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.authenticate(ctx, req.Spec().Procedure, req.Peer(), req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor; clients carry no
// server-side check.
func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor. The check runs before
// the handler reads or sends anything; the error returned here reaches the
// client in the end-of-stream frame.
func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.authenticate(ctx, conn.Spec().Procedure, conn.Peer(), conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// authenticate returns ctx carrying the caller's claims, or the error to send.
func (i *interceptor) authenticate(ctx context.Context, procedure string, peer connect.Peer, header http.Header) (context.Context, error) {
	if i.isPublic(procedure) {
		return ctx, nil
	}
	token, ok := bearerToken(header)
	if !ok {
		i.log.InfoContext(ctx, "rpc unauthenticated", "procedure", procedure, "peer", peer.Addr, "reason", errNoToken)
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(unauthenticatedMessage))
	}
	claims, err := i.verifier.Verify(ctx, token)
	if err != nil {
		// Expired tokens are routine (a client refreshing late); anything else
		// is a misconfiguration or someone probing, worth a Warn.
		level := slog.LevelWarn
		if errors.Is(err, jwt.ErrTokenExpired) {
			level = slog.LevelInfo
		}
		i.log.Log(ctx, level, "rpc unauthenticated", "procedure", procedure, "peer", peer.Addr, "reason", err)
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(unauthenticatedMessage))
	}
	return WithClaims(ctx, claims), nil
}

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/rpc"
)

// RateLimits are the free plan's limits per class of RPC; a plan's
// multiplier scales them.
type RateLimits struct {
	Chat    ratelimit.Limit // SendMessage, RegenerateMessage, EditMessage
	Agent   ratelimit.Limit // starting agent runs
	General ratelimit.Limit // everything else
	// SharedReads bounds GetSharedConversation per client address, with a
	// token or without: the call is public, so a token says nothing about
	// who is scraping.
	SharedReads ratelimit.Limit
	// AuthFailures bounds the calls per client IP that fail authentication,
	// per instance; past it a client IP is refused before any token check.
	AuthFailures ratelimit.Limit
}

// class is a family of RPCs that share a limit.
type class struct {
	name string
	// failOpen classes are allowed while the shared limiter is down; the
	// others fall back to per-instance limits.
	failOpen bool
	// perAddress classes count per client address even for authenticated
	// calls.
	perAddress bool
}

var (
	classChat    = class{name: "chat"}
	classAgent   = class{name: "agent"}
	classGeneral = class{name: "general", failOpen: true}
	// Shared reads fall back to per-instance limits while Redis is down: a
	// public endpoint stays bounded.
	classShared = class{name: "shared", perAddress: true}
)

// classes maps procedures to their class; unlisted ones are general.
var classes = map[string]class{
	parleyv1connect.ChatServiceSendMessageProcedure:            classChat,
	parleyv1connect.ChatServiceRegenerateMessageProcedure:      classChat,
	parleyv1connect.ChatServiceEditMessageProcedure:            classChat,
	parleyv1connect.AgentServiceStartRunProcedure:              classAgent,
	parleyv1connect.ShareServiceGetSharedConversationProcedure: classShared,
}

// rateLimiter is the interceptor that applies the limits: per user when
// the call is authenticated, per client IP otherwise. Every answer to a
// checked call carries RateLimit-* headers (a call whose plan could not be
// read, or whose context ended during the check, has no check to report);
// over the limit answers resource_exhausted with
// Retry-After, as an HTTP header for Connect and gRPC-Web and as metadata
// for gRPC.
type rateLimiter struct {
	log     *slog.Logger
	limiter *ratelimit.Resilient
	limits  RateLimits
	plans   plan.Resolver
	hops    int
}

func (l *rateLimiter) limitFor(c class) ratelimit.Limit {
	switch c {
	case classChat:
		return l.limits.Chat
	case classAgent:
		return l.limits.Agent
	case classShared:
		return l.limits.SharedReads
	}
	return l.limits.General
}

// check runs one limit check. checked says whether it gave an answer (it
// did not if the caller's plan could not be read, or if the caller's
// context ended during the check): then res is what the response's headers
// say, and err, when the call is refused, carries them already.
func (l *rateLimiter) check(ctx context.Context, procedure string, peer connect.Peer, reqHeader http.Header) (res ratelimit.Result, checked bool, err error) {
	c, ok := classes[procedure]
	if !ok {
		c = classGeneral
	}
	limit := l.limitFor(c)
	var key string
	if claims, ok := auth.ClaimsFrom(ctx); ok && !c.perAddress {
		key = c.name + ":user:" + claims.UserID.String()
		if l.plans != nil {
			p, err := l.plans.PlanOf(ctx, claims.UserID)
			if err != nil {
				return ratelimit.Result{}, false, err
			}
			limit = limit.Scale(p.RateMultiplier)
		}
	} else {
		key = c.name + ":ip:" + clientIP(reqHeader, peer.Addr, l.hops)
	}
	res, _ = l.limiter.Allow(ctx, key, limit, c.failOpen)
	if res.Allowed {
		return res, true, nil
	}
	if err := ctx.Err(); err != nil {
		// The caller's deadline passed or it left during the check, which
		// then says nothing: answer that, not a refusal to retry in 0s.
		code := connect.CodeCanceled
		if errors.Is(err, context.DeadlineExceeded) {
			code = connect.CodeDeadlineExceeded
		}
		return res, false, connect.NewError(code, err)
	}
	retry := seconds(res.RetryAfter)
	ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"rate limit exceeded: %d %s requests per %s; retry in %ds", limit.Rate, c.name, limit.Period, retry))
	setRateHeaders(ce.Meta(), res)
	ce.Meta().Set("Retry-After", strconv.Itoa(retry))
	return res, true, ce
}

func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// rateHeaders are the limit headers every checked response carries, as
// http.Header keys (canonical): the IETF draft's RateLimit-* and the
// X-RateLimit-* that clients of express-rate-limit read.
var rateHeaders = [6]string{
	"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset",
	"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset",
}

// setRateHeaders sets the limit headers of res on h. Every call answers
// with them, so they share one allocation and skip key canonicalization.
func setRateHeaders(h http.Header, res ratelimit.Result) {
	limit, remaining, reset := strconv.Itoa(res.Limit.Burst), strconv.Itoa(res.Remaining), strconv.Itoa(seconds(res.ResetAfter))
	vals := [...]string{limit, remaining, reset, limit, remaining, reset}
	backing := vals[:] // one allocation for the six values
	for i, key := range rateHeaders {
		h[key] = backing[i : i+1 : i+1]
	}
}

// clientIP is the address Cloud Run's front end saw: the hops-th entry
// from the right of X-Forwarded-For (entries to its left are whatever the
// client sent, and can be forged). Without such an entry, the peer address.
func clientIP(h http.Header, peerAddr string, hops int) string {
	if hops > 0 {
		var hopsList []string
		for _, v := range h.Values("X-Forwarded-For") {
			for _, part := range strings.Split(v, ",") {
				hopsList = append(hopsList, strings.TrimSpace(part))
			}
		}
		if len(hopsList) >= hops {
			if ip := net.ParseIP(hopsList[len(hopsList)-hops]); ip != nil {
				return ip.String()
			}
		}
	}
	if host, _, err := net.SplitHostPort(peerAddr); err == nil {
		return host
	}
	return peerAddr
}

func (l *rateLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		limited, _, err := l.check(ctx, req.Spec().Procedure, req.Peer(), req.Header())
		if err != nil {
			return nil, err
		}
		res, err := next(ctx, req)
		// The headers travel on success and on failure alike; a domain
		// error becomes its Connect form here so it can carry them.
		err = rpc.ToConnect(ctx, l.log, req.Spec().Procedure, err)
		var ce *connect.Error
		switch {
		case err == nil && res != nil:
			setRateHeaders(res.Header(), limited)
		case errors.As(err, &ce):
			setRateHeaders(ce.Meta(), limited)
		}
		return res, err
	}
}

func (l *rateLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l *rateLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := l.checkStream(ctx, conn); err != nil {
			return err
		}
		// The stream's handler waits under this frame for the whole
		// answer: the check's locals are in checkStream's.
		return next(ctx, conn)
	}
}

// checkStream is check for a streaming call.
func (l *rateLimiter) checkStream(ctx context.Context, conn connect.StreamingHandlerConn) error {
	res, checked, err := l.check(ctx, conn.Spec().Procedure, conn.Peer(), conn.RequestHeader())
	if checked {
		setRateHeaders(conn.ResponseHeader(), res)
	}
	if err != nil {
		// Connect streams answer HTTP 200 with the error in the last
		// frame: say Retry-After in the headers too.
		var ce *connect.Error
		if errors.As(err, &ce) {
			if retry := ce.Meta().Get("Retry-After"); retry != "" {
				conn.ResponseHeader().Set("Retry-After", retry)
			}
		}
	}
	return err
}

// authFailures refuses, before any signature is checked, client IPs (IPv6:
// their /64, see clientKey) that sent too many calls failing
// authentication: a flood of bad tokens would otherwise cost a verification
// each. It counts per instance, in memory,
// so it adds no round trip to calls that authenticate.
type authFailures struct {
	// verifier lets clients whose token it already verified through: an
	// address shared with a misbehaving client (a NAT) stays usable.
	verifier *auth.Verifier
	counts   *ratelimit.Memory
	limit    ratelimit.Limit
	hops     int
}

// clientKey is who the bad-token limit counts: an IPv4 address, or the /64
// an IPv6 address belongs to. A /64 is one subscriber's link (the smallest
// prefix ISPs and clouds hand out), and the host picks the low 64 bits at
// will: privacy addresses rotate them, and a flooder could use a new one per
// call. Counting by /64 gives each client one budget however it numbers
// itself.
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	network, err := addr.Prefix(64)
	if err != nil {
		return addr.String()
	}
	return network.String()
}

func (a *authFailures) refuse(ip string, h http.Header) error {
	res := a.counts.Peek("authfail:"+ip, a.limit)
	if res.Allowed {
		return nil
	}
	retry := max(1, seconds(res.RetryAfter))
	err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"too many calls with missing or invalid access tokens from this address; retry in %ds", retry))
	err.Meta().Set("Retry-After", strconv.Itoa(retry))
	if h != nil {
		h.Set("Retry-After", strconv.Itoa(retry))
	}
	return err
}

func (a *authFailures) count(ip string, err error) {
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		a.counts.Allow(context.Background(), "authfail:"+ip, a.limit)
	}
}

func (a *authFailures) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ip := clientKey(clientIP(req.Header(), req.Peer().Addr, a.hops))
		if !a.verifier.Recognizes(req.Header()) {
			if err := a.refuse(ip, nil); err != nil {
				return nil, err
			}
		}
		res, err := next(ctx, req)
		a.count(ip, err)
		return res, err
	}
}

func (a *authFailures) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authFailures) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ip := clientKey(clientIP(conn.RequestHeader(), conn.Peer().Addr, a.hops))
		if !a.verifier.Recognizes(conn.RequestHeader()) {
			if err := a.refuse(ip, conn.ResponseHeader()); err != nil {
				return err
			}
		}
		err := next(ctx, conn)
		a.count(ip, err)
		return err
	}
}

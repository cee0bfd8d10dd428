package llm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/parleyhq/parley/internal/apperr"
)

// defaultRetryAfter is what a 429 without a usable Retry-After header asks
// clients to wait, in seconds: long enough not to hammer a rate limiter,
// short enough that nobody notices.
const defaultRetryAfter = 1

// maxAPIMessage bounds how much of a provider's error text goes into logs.
const maxAPIMessage = 300

var (
	// errIdle is the cause of a request canceled by the idle timer.
	errIdle = errors.New("no data from the model provider within the idle timeout")
	// errClosed is the cause of a request canceled by Stream.Close.
	errClosed = errors.New("stream closed")
	// errTruncated reports a response body that ended without a finish reason.
	errTruncated = errors.New("response ended before the answer was finished")
)

// interpretError translates whatever the SDK, the transport or the stream
// returned into the one *apperr.Error the rest of Parley understands. It is
// the only place that knows provider failure modes. callerCtx is the context
// the caller passed to Stream; reqCtx is the one the upstream request ran on.
// started reports whether the provider had already accepted the request, after
// which any failure means the answer broke off.
func interpretError(err error, callerCtx, reqCtx context.Context, started bool) *apperr.Error {
	// The caller's context comes first: when it ended, every other error is
	// just a consequence of the cancellation.
	if ctxErr := callerCtx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return apperr.Wrap(ctxErr, apperr.DeadlineExceeded, "the model took too long to answer")
		}
		return apperr.Wrap(ctxErr, apperr.Canceled, "the request was canceled")
	}
	switch context.Cause(reqCtx) {
	case errIdle:
		return apperr.Wrap(errIdle, apperr.DeadlineExceeded, "the model provider stopped responding; try again")
	case errClosed:
		return apperr.Wrap(errClosed, apperr.Canceled, "the answer stream was closed")
	}

	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return interpretStatus(apiErr)
	}
	if started {
		return apperr.Wrap(err, apperr.Unavailable, "the model provider's answer broke off; try again")
	}
	// Before the first byte the transport wraps every network failure
	// (refused, reset, DNS, TLS) in *url.Error; anything else came from
	// building the request, which is our bug, not the provider's outage.
	var urlErr *url.Error
	var netErr net.Error
	if errors.As(err, &urlErr) || errors.As(err, &netErr) {
		return apperr.Wrap(err, apperr.Unavailable, "the model provider is unreachable; try again shortly")
	}
	return apperr.Wrap(err, apperr.Internal, "the model request could not be made")
}

// interpretStatus maps an HTTP error status from the provider.
func interpretStatus(apiErr *openai.Error) *apperr.Error {
	status := apiErr.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		// Always ResourceExhausted, even without Retry-After: the provider
		// asked us to slow down, and telling clients to retry at once
		// (Unavailable) would make the rate limiting worse.
		e := apperr.Wrap(describe(apiErr), apperr.ResourceExhausted, "the model provider is rate limiting requests; try again in a moment")
		e.RetryAfter = retryAfterSeconds(apiErr.Response, time.Now())
		return e
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// The provider's message is left out: some echo the key, masked
		// or not, and it must never reach a log line.
		return apperr.Wrap(apiErr, apperr.Internal, "model provider rejected the server's credentials")
	case status == http.StatusBadRequest && isContextLengthError(apiErr):
		// The one 400 a user can fix; every other 400 is a request we
		// built wrong and they cannot do anything about.
		return &apperr.Error{
			Code:    apperr.Invalid,
			Field:   "messages",
			Message: "the conversation is too long for the model; start a new conversation or send a shorter message",
			Err:     describe(apiErr),
		}
	case status == http.StatusRequestTimeout || status == http.StatusConflict || status >= 500:
		// The SDK treats 408 and 409 as transient too.
		return apperr.Wrap(describe(apiErr), apperr.Unavailable, "the model provider is unavailable; try again shortly")
	default:
		return apperr.Wrap(describe(apiErr), apperr.Internal, "the model provider rejected the request")
	}
}

// describe adds the provider's error type, code and message to the SDK's
// status-only summary, for logs.
func describe(apiErr *openai.Error) error {
	msg := apiErr.Message
	if len(msg) > maxAPIMessage {
		msg = msg[:maxAPIMessage] + "…"
	}
	return fmt.Errorf("%w (type %q, code %q): %s", apiErr, apiErr.Type, apiErr.Code, msg)
}

// isContextLengthError recognizes OpenAI's error code and the wording vLLM,
// Ollama and OpenRouter use for a prompt over the model's context window.
func isContextLengthError(apiErr *openai.Error) bool {
	if apiErr.Code == "context_length_exceeded" {
		return true
	}
	msg := strings.ToLower(apiErr.Message)
	return strings.Contains(msg, "context length") || strings.Contains(msg, "context window")
}

// retryAfterSeconds reads Retry-After-Ms or Retry-After (seconds or an HTTP
// date), rounded up to whole seconds, or returns defaultRetryAfter.
func retryAfterSeconds(res *http.Response, now time.Time) int {
	if res == nil {
		return defaultRetryAfter
	}
	if v := res.Header.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil {
			return wholeSeconds(ms / 1000)
		}
	}
	v := res.Header.Get("Retry-After")
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return wholeSeconds(secs)
	}
	if at, err := http.ParseTime(v); err == nil {
		return wholeSeconds(at.Sub(now).Seconds())
	}
	return defaultRetryAfter
}

// wholeSeconds rounds a wait up so clients never come back too early.
func wholeSeconds(secs float64) int {
	if !(secs > 0) { // also catches NaN
		return defaultRetryAfter
	}
	return int(math.Min(math.Ceil(secs), math.MaxInt32))
}

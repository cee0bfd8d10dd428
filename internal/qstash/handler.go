package qstash

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Headers QStash sends with a delivery, and the one it reads from the answer.
const (
	HeaderSignature         = "Upstash-Signature"
	HeaderMessageID         = "Upstash-Message-Id"
	HeaderRetried           = "Upstash-Retried"
	HeaderNonRetryableError = "Upstash-NonRetryable-Error"
)

// StatusNonRetryable is the status that, with "Upstash-NonRetryable-Error: true",
// makes QStash stop retrying a message at once and move it to its dead letter queue
// (https://upstash.com/docs/qstash/features/retry, "Non-Retryable Error").
const StatusNonRetryable = 489

// DefaultMaxBody is the largest delivery body NewHandler reads unless told otherwise.
const DefaultMaxBody = 64 << 10

// replayMargin is how long past a token's exp a message id is remembered, so that a
// token our clock still accepts (leeway, skew) is always found.
const replayMargin = time.Minute

// Replays remembers the QStash message ids that have been run, so a captured delivery
// cannot be played again while its token is still valid.
type Replays interface {
	// Seen reports whether messageID has been recorded by Done and not yet forgotten.
	Seen(ctx context.Context, messageID string) (bool, error)
	// Done records messageID until the instant until; it may be forgotten after that,
	// because every token that could carry it has expired by then.
	Done(ctx context.Context, messageID string, until time.Time) error
}

// HandlerConfig is what NewHandler needs.
type HandlerConfig struct {
	// Receiver verifies the Upstash-Signature header.
	Receiver *Receiver
	// URL is this endpoint's public URL exactly as it was given to Publish as the
	// destination; the signature's subject must equal it.
	URL string
	// MaxBody caps the body read; DefaultMaxBody when zero.
	MaxBody int64
	// Replays records which message ids have run.
	Replays Replays
	// Deliver runs a verified delivery. nil answers 200; an error answers 500 so QStash
	// retries, unless it is Permanent, which answers 489 so QStash gives up. Deliver
	// must be idempotent: QStash delivers at least once and Replays cannot stop two
	// attempts that overlap.
	Deliver func(ctx context.Context, body []byte) error
	// Log receives one line per refused or failed delivery; nil discards.
	Log *slog.Logger
}

// permanentError marks an error QStash should not retry.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that another attempt cannot cure (a malformed step, say),
// so the handler tells QStash to stop retrying. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// NewHandler returns the endpoint QStash delivers to.
//
// Answers: 405 for a method other than POST; 413 for a body over MaxBody; 401 for a
// missing or bad signature, a missing Upstash-Message-Id or a token already used (a
// replay); 200 when Deliver succeeded, and without running anything for a new token
// of a message that already ran (QStash's retry after a lost answer); 489 with Upstash-NonRetryable-Error when Deliver's error
// is Permanent; 500 for any other failure. Bodies are short and generic; the reason is
// logged.
func NewHandler(cfg HandlerConfig) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &handler{cfg: cfg}
}

type handler struct{ cfg HandlerConfig }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.cfg.Log.Warn("qstash delivery refused", "reason", "body too large", "limit", h.cfg.MaxBody)
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		h.cfg.Log.Warn("qstash delivery refused", "reason", "reading body", "err", err)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c, err := h.cfg.Receiver.verify(r.Header.Get(HeaderSignature), body, h.cfg.URL)
	if err != nil {
		h.unauthorized(w, err.Error(), r.Header.Get(HeaderMessageID))
		return
	}
	messageID := r.Header.Get(HeaderMessageID)
	if messageID == "" {
		h.unauthorized(w, "message id missing", "")
		return
	}
	// A replay is the same signed token sent again: its jti is signed, so a
	// replayer cannot change it (the message id header is not signed).
	if c.ID == "" {
		h.unauthorized(w, "token has no jti", messageID)
		return
	}
	log := h.cfg.Log.With("message_id", messageID, "retried", r.Header.Get(HeaderRetried))
	ctx := r.Context()
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		// The delivery's span (when tracing is on) names the message, as
		// QStash's console does.
		span.SetAttributes(attribute.String("qstash.message.id", messageID), attribute.String("qstash.retried", r.Header.Get(HeaderRetried)))
	}
	replayed, err := h.cfg.Replays.Seen(ctx, tokenKey(c.ID))
	if err == nil && !replayed {
		var ran bool
		if ran, err = h.cfg.Replays.Seen(ctx, messageKey(messageID)); err == nil && ran {
			// QStash retries a message whose answer it did not get with a
			// new token: the work is done, so say so, or it retries until
			// its dead letter queue.
			log.Info("qstash delivery of a message already run; acknowledged")
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	if err != nil {
		log.Error("qstash delivery failed", "reason", "replay check", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if replayed {
		h.unauthorized(w, "token already used", messageID)
		return
	}
	if err := h.cfg.Deliver(ctx, body); err != nil {
		if IsPermanent(err) {
			log.Error("qstash delivery failed permanently", "err", err)
			w.Header().Set(HeaderNonRetryableError, "true")
			http.Error(w, "not retryable", StatusNonRetryable)
			return
		}
		log.Error("qstash delivery failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// The step has run: record it even if QStash has hung up meanwhile, or the retry
	// QStash then sends would run it again.
	doneCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	until := c.ExpiresAt.Add(h.cfg.Receiver.leeway + replayMargin)
	err = errors.Join(h.cfg.Replays.Done(doneCtx, tokenKey(c.ID), until),
		h.cfg.Replays.Done(doneCtx, messageKey(messageID), time.Now().Add(messageMemory)))
	if err != nil {
		// Answer 200 all the same: the work is done, and a 5xx would only have QStash
		// run it again. The cost is that a replay within the token's lifetime is not
		// refused, which an idempotent Deliver absorbs.
		log.Error("qstash delivery ran but was not recorded", "err", err)
	}
	w.WriteHeader(http.StatusOK)
}

// messageMemory is how long a message that ran is remembered, so QStash's
// retries of it (its backoff spans about a day at most) are acknowledged.
const messageMemory = 72 * time.Hour

// tokenKey and messageKey are the Replays keys of a token's jti and of a
// message id.
func tokenKey(jti string) string  { return "jti:" + jti }
func messageKey(id string) string { return "msg:" + id }

// unauthorized answers 401 and logs why; reason never holds a key or the token.
func (h *handler) unauthorized(w http.ResponseWriter, reason, messageID string) {
	h.cfg.Log.Warn("qstash delivery refused", "reason", reason, "message_id", messageID)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

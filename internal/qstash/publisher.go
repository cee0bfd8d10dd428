package qstash

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is QStash's global API endpoint.
const DefaultBaseURL = "https://qstash.upstash.io"

// DefaultRetries in Message.Retries leaves the number of delivery retries to QStash
// (the plan's maximum).
const DefaultRetries = -1

// Message is one publish to QStash.
type Message struct {
	// Destination is the absolute http(s) URL QStash delivers to. It is also the sub
	// claim of the delivery's signature, so the receiving handler must be configured
	// with exactly this string.
	Destination string
	// Body is delivered as is.
	Body []byte
	// ContentType is sent on the delivery; empty leaves it unset.
	ContentType string
	// DeduplicationID makes QStash accept a second publish with the same id without
	// enqueuing it (it keeps ids for 90 days). QStash refuses ids containing ':' or
	// whitespace.
	DeduplicationID string
	// Delay postpones the first delivery; it is sent in whole seconds, rounded up.
	Delay time.Duration
	// Retries is how many times QStash retries a failed delivery (so 1+Retries
	// attempts). Zero means no retry; DefaultRetries leaves QStash's default.
	Retries int
	// Timeout shortens how long QStash waits for the destination to answer (whole
	// seconds, rounded up); zero leaves the plan's limit.
	Timeout time.Duration
}

// StatusError is a publish QStash answered with a non-2xx status.
type StatusError struct {
	// StatusCode is QStash's HTTP status.
	StatusCode int
	// Message is QStash's error text, cut short; it never contains the token.
	Message string
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("qstash: publish: status %d", e.StatusCode)
	}
	return fmt.Sprintf("qstash: publish: status %d: %s", e.StatusCode, e.Message)
}

// Publisher publishes messages to QStash. It is safe for concurrent use.
type Publisher struct {
	baseURL  string
	token    string
	client   *http.Client
	attempts int
	backoff  time.Duration
	maxWait  time.Duration
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithHTTPClient sends requests through client instead of one with a 30 s timeout.
func WithHTTPClient(client *http.Client) PublisherOption {
	return func(p *Publisher) { p.client = client }
}

// WithRetry sets how many attempts a publish gets (at least 1), the first wait
// between them (doubled each time) and the longest single wait, which also caps a
// Retry-After QStash asks for. The default is 4 attempts, 200 ms and 5 s: well under
// half a minute in all, since a caller is usually waiting to answer a request.
func WithRetry(attempts int, backoff, maxWait time.Duration) PublisherOption {
	return func(p *Publisher) {
		p.attempts = max(1, attempts)
		p.backoff = backoff
		p.maxWait = maxWait
	}
}

// NewPublisher returns a Publisher for the QStash API at baseURL (DefaultBaseURL when
// empty) authenticated with token.
func NewPublisher(baseURL, token string, opts ...PublisherOption) *Publisher {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	p := &Publisher{
		baseURL:  strings.TrimRight(baseURL, "/"),
		token:    token,
		client:   &http.Client{Timeout: 30 * time.Second},
		attempts: 4,
		backoff:  200 * time.Millisecond,
		maxWait:  5 * time.Second,
	}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

// publishResponse is QStash's answer to a publish to one URL.
type publishResponse struct {
	MessageID    string `json:"messageId"`
	Deduplicated bool   `json:"deduplicated"`
}

// Publish hands m to QStash and returns the id QStash gave it; a publish that QStash
// deduplicated returns the first message's id.
//
// Network errors, 429 and 5xx are retried with bounded exponential backoff (a 429's
// Retry-After is honoured up to the longest wait; a longer one ends the retries);
// other answers are returned at once as a *StatusError. ctx bounds the whole call,
// waits included. Errors never contain the token.
func (p *Publisher) Publish(ctx context.Context, m Message) (string, error) {
	endpoint, err := p.endpoint(m.Destination)
	if err != nil {
		return "", err
	}
	wait := p.backoff
	for attempt := 1; ; attempt++ {
		resp, err := p.send(ctx, endpoint, m)
		if err == nil {
			return resp.MessageID, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("qstash: publish: %w", ctx.Err())
		}
		var retryAfter time.Duration
		var se *StatusError
		var ra *retryAfterError
		switch {
		case errors.As(err, &ra):
			// Callers see the plain *StatusError; the wait is only for this loop.
			err, retryAfter = ra.StatusError, ra.after
		case errors.As(err, &se) && !retryable(se.StatusCode):
			return "", err
		}
		if attempt >= p.attempts || retryAfter > p.maxWait {
			return "", err
		}
		d := retryAfter
		if d == 0 {
			// Jitter in [wait/2, wait) so many publishers failing together spread out.
			d = wait/2 + rand.N(wait/2+1)
			wait = min(2*wait, p.maxWait)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("qstash: publish: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// endpoint is the publish URL for destination: QStash takes the destination URL
// appended verbatim to /v2/publish/, as its SDKs do.
func (p *Publisher) endpoint(destination string) (string, error) {
	u, err := url.Parse(destination)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("qstash: publish: destination must be an absolute http(s) URL")
	}
	return p.baseURL + "/v2/publish/" + destination, nil
}

// retryable reports whether a publish answered with status may succeed if sent again.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// retryAfterError is a 429 or 503 that said when to come back.
type retryAfterError struct {
	*StatusError
	after time.Duration
}

// send makes one publish request.
func (p *Publisher) send(ctx context.Context, endpoint string, m Message) (*publishResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(m.Body))
	if err != nil {
		return nil, fmt.Errorf("qstash: publish: destination is not a valid URL path")
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Upstash-Method", http.MethodPost)
	if m.ContentType != "" {
		req.Header.Set("Content-Type", m.ContentType)
	}
	if m.DeduplicationID != "" {
		req.Header.Set("Upstash-Deduplication-Id", m.DeduplicationID)
	}
	if m.Delay > 0 {
		req.Header.Set("Upstash-Delay", seconds(m.Delay))
	}
	if m.Retries >= 0 {
		req.Header.Set("Upstash-Retries", strconv.Itoa(m.Retries))
	}
	if m.Timeout > 0 {
		req.Header.Set("Upstash-Timeout", seconds(m.Timeout))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		// *url.Error names the URL (destination included) but never a header.
		return nil, fmt.Errorf("qstash: publish: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("qstash: publish: reading the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{StatusCode: resp.StatusCode, Message: errorText(raw)}
		if after, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok && retryable(resp.StatusCode) {
			return nil, &retryAfterError{StatusError: se, after: after}
		}
		return nil, se
	}
	var out publishResponse
	if err := json.Unmarshal(raw, &out); err != nil || out.MessageID == "" {
		return nil, &StatusError{StatusCode: resp.StatusCode, Message: "answer has no messageId"}
	}
	return &out, nil
}

// seconds formats d as QStash's duration headers want it: whole seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) + "s"
}

// errorText is the error field of QStash's JSON error body, or the body itself, cut
// to a length fit for a log line.
func errorText(raw []byte) string {
	var body struct {
		Error string `json:"error"`
	}
	text := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		text = body.Error
	}
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return text
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

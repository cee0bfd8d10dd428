// Package qstashtest is a local stand-in for QStash for end-to-end tests: it accepts
// publishes on the real wire format (POST /v2/publish/{destination}) and delivers
// them, signed as QStash signs, with QStash's retry, delay and deduplication rules
// scaled down to test speed.
package qstashtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/qstash"
)

// PublishRequest is one publish the stand-in accepted.
type PublishRequest struct {
	// MessageID is the id the stand-in answered with.
	MessageID string
	// Destination is the URL taken from the path.
	Destination string
	// Header holds the request's headers, Authorization removed.
	Header http.Header
	// Body is the message body.
	Body []byte
	// Deduplicated is true when the publish repeated a deduplication id and was not
	// enqueued again.
	Deduplicated bool
}

// Delivery is one delivery attempt.
type Delivery struct {
	// MessageID is the Upstash-Message-Id sent.
	MessageID string
	// Destination is the URL delivered to.
	Destination string
	// Retried is the Upstash-Retried sent: 0 on the first attempt.
	Retried int
	// StatusCode is the destination's answer, 0 when the request itself failed.
	StatusCode int
	// Err describes a request that got no answer.
	Err string
}

// Succeeded reports whether the destination answered 2xx.
func (d Delivery) Succeeded() bool { return d.StatusCode >= 200 && d.StatusCode <= 299 }

// Option configures a Server.
type Option func(*Server)

// WithDelayScale multiplies every Upstash-Delay by scale (1 by default), so a test can
// publish with a realistic delay and wait a fraction of it. 0 delivers at once.
func WithDelayScale(scale float64) Option {
	return func(s *Server) { s.delayScale = scale }
}

// WithRetryBackoff sets the wait between delivery attempts (10 ms by default), which
// stands in for QStash's exponential backoff of seconds to hours.
func WithRetryBackoff(d time.Duration) Option {
	return func(s *Server) { s.retryBackoff = d }
}

// WithNextKeySigning signs deliveries with the next signing key, as QStash does once
// a key rotation has begun.
func WithNextKeySigning() Option {
	return func(s *Server) { s.signWithNext = true }
}

// WithDefaultRetries sets the retries a publish without Upstash-Retries gets (3, the
// free plan's default, unless set).
func WithDefaultRetries(n int) Option {
	return func(s *Server) { s.defaultRetries = n }
}

// Server is the stand-in. Its methods are safe for concurrent use.
type Server struct {
	tb             testing.TB
	srv            *httptest.Server
	client         *http.Client
	token          string
	currentKey     string
	nextKey        string
	signer         *qstash.Signer
	delayScale     float64
	retryBackoff   time.Duration
	signWithNext   bool
	defaultRetries int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	seq        int
	dedup      map[string]string
	published  []PublishRequest
	deliveries []Delivery
	inflight   int           // messages accepted whose deliveries have not ended
	changed    chan struct{} // closed and replaced whenever deliveries or inflight change
}

// New starts a stand-in on 127.0.0.1 with a fresh token and signing keys. It is closed
// in tb.Cleanup, after every delivery in flight has ended.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		tb:             tb,
		client:         &http.Client{Timeout: 30 * time.Second},
		token:          "qstash_test_" + rand.Text(),
		currentKey:     "sig_" + rand.Text(),
		nextKey:        "sig_" + rand.Text(),
		delayScale:     1,
		retryBackoff:   10 * time.Millisecond,
		defaultRetries: 3,
		ctx:            ctx,
		cancel:         cancel,
		dedup:          map[string]string{},
		changed:        make(chan struct{}),
	}
	for _, opt := range opts {
		opt(s)
	}
	key := s.currentKey
	if s.signWithNext {
		key = s.nextKey
	}
	s.signer = qstash.NewSigner(key)
	// Not a ServeMux: it would clean the "//" of the destination's scheme out of the
	// path and redirect.
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.close)
	return s
}

// URL is the base URL to give qstash.NewPublisher.
func (s *Server) URL() string { return s.srv.URL }

// Token is the bearer token publishes must carry.
func (s *Server) Token() string { return s.token }

// CurrentKey is the current signing key.
func (s *Server) CurrentKey() string { return s.currentKey }

// NextKey is the next signing key.
func (s *Server) NextKey() string { return s.nextKey }

// Published returns the publishes accepted so far, in order.
func (s *Server) Published() []PublishRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PublishRequest(nil), s.published...)
}

// Deliveries returns every delivery attempt so far, in the order they ended.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// WaitSucceeded waits until n deliveries have succeeded and returns every attempt so
// far; it fails the test when that takes longer than timeout.
func (s *Server) WaitSucceeded(n int, timeout time.Duration) []Delivery {
	s.tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := 0
		for _, d := range s.deliveries {
			if d.Succeeded() {
				ok++
			}
		}
		all := append([]Delivery(nil), s.deliveries...)
		changed := s.changed
		s.mu.Unlock()
		if ok >= n {
			return all
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.tb.Fatalf("qstashtest: %d of %d deliveries succeeded within %v; attempts: %+v", ok, n, timeout, all)
			return nil
		}
	}
}

// WaitIdle waits until every accepted message has had its last attempt (success,
// retries exhausted or non-retryable) and returns every attempt; it fails the test
// when that takes longer than timeout. After it, Deliveries is final until the next
// publish.
func (s *Server) WaitIdle(timeout time.Duration) []Delivery {
	s.tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		inflight, changed := s.inflight, s.changed
		all := append([]Delivery(nil), s.deliveries...)
		s.mu.Unlock()
		if inflight == 0 {
			return all
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.tb.Fatalf("qstashtest: %d messages still being delivered after %v; attempts: %+v", inflight, timeout, all)
			return nil
		}
	}
}

// notifyLocked wakes the waiters; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// close stops new publishes, cancels deliveries in flight, waits for them and shuts
// the listener.
func (s *Server) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.srv.Close()
}

const publishPrefix = "/v2/publish/"

// serve answers the publish API.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, publishPrefix) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	auth := r.Header.Get("Authorization")
	if subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+s.token)) != 1 {
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	// The destination is the rest of the request target, its query included.
	destination := strings.TrimPrefix(r.URL.Path, publishPrefix)
	if r.URL.RawQuery != "" {
		destination += "?" + r.URL.RawQuery
	}
	if u, err := url.Parse(destination); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeError(w, http.StatusBadRequest, "invalid destination url")
		return
	}
	if m := r.Header.Get("Upstash-Method"); m != "" && m != http.MethodPost {
		writeError(w, http.StatusBadRequest, "qstashtest delivers POST only")
		return
	}
	delay, err := parseDelay(r.Header.Get("Upstash-Delay"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid Upstash-Delay")
		return
	}
	retries := s.defaultRetries
	if v := r.Header.Get("Upstash-Retries"); v != "" {
		retries, err = strconv.Atoi(v)
		if err != nil || retries < 0 {
			writeError(w, http.StatusBadRequest, "invalid Upstash-Retries")
			return
		}
	}
	dedupID := r.Header.Get("Upstash-Deduplication-Id")
	if strings.ContainsAny(dedupID, ": \t\r\n") {
		writeError(w, http.StatusBadRequest, "deduplication id must not contain ':' or whitespace")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil || len(body) > 1<<20 {
		writeError(w, http.StatusRequestEntityTooLarge, "message too large")
		return
	}
	header := r.Header.Clone()
	header.Del("Authorization")

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	if id, dup := s.dedup[dedupID]; dup && dedupID != "" {
		s.published = append(s.published, PublishRequest{MessageID: id, Destination: destination, Header: header, Body: body, Deduplicated: true})
		s.mu.Unlock()
		// QStash answers a duplicate with 202 and the first message's id.
		writeJSON(w, http.StatusAccepted, map[string]any{"messageId": id, "deduplicated": true})
		return
	}
	s.seq++
	id := fmt.Sprintf("msg_%d_%s", s.seq, rand.Text()[:8])
	if dedupID != "" {
		s.dedup[dedupID] = id
	}
	s.published = append(s.published, PublishRequest{MessageID: id, Destination: destination, Header: header, Body: body})
	s.wg.Add(1)
	s.inflight++
	s.mu.Unlock()

	go s.deliver(id, destination, header, body, time.Duration(float64(delay)*s.delayScale), retries)
	writeJSON(w, http.StatusCreated, map[string]any{"messageId": id})
}

// deliver waits out the delay, then makes up to 1+retries attempts.
func (s *Server) deliver(id, destination string, published http.Header, body []byte, delay time.Duration, retries int) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.notifyLocked()
		s.mu.Unlock()
	}()
	if !s.sleep(delay) {
		return
	}
	for retried := 0; retried <= retries; retried++ {
		if retried > 0 && !s.sleep(s.retryBackoff) {
			return
		}
		d, stop := s.attempt(id, destination, published, body, retried)
		if s.ctx.Err() != nil {
			return // Closing: an attempt cut short is not the destination's answer.
		}
		s.mu.Lock()
		s.deliveries = append(s.deliveries, d)
		s.notifyLocked()
		s.mu.Unlock()
		if stop {
			return
		}
	}
}

// attempt makes one delivery request; stop is true when QStash would not try again.
func (s *Server) attempt(id, destination string, published http.Header, body []byte, retried int) (d Delivery, stop bool) {
	d = Delivery{MessageID: id, Destination: destination, Retried: retried}
	signature, err := s.signer.Sign(body, destination)
	if err != nil {
		d.Err = "signing: " + err.Error()
		return d, true
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, destination, bytes.NewReader(body))
	if err != nil {
		d.Err = err.Error()
		return d, true
	}
	for name, values := range published {
		if forwarded, ok := strings.CutPrefix(name, "Upstash-Forward-"); ok {
			req.Header[http.CanonicalHeaderKey(forwarded)] = values
		}
	}
	if ct := published.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("User-Agent", "Upstash-QStash")
	req.Header.Set(qstash.HeaderSignature, signature)
	req.Header.Set(qstash.HeaderMessageID, id)
	req.Header.Set(qstash.HeaderRetried, strconv.Itoa(retried))
	resp, err := s.client.Do(req)
	if err != nil {
		d.Err = err.Error()
		return d, false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	d.StatusCode = resp.StatusCode
	if d.Succeeded() {
		return d, true
	}
	nonRetryable := resp.StatusCode == qstash.StatusNonRetryable && resp.Header.Get(qstash.HeaderNonRetryableError) == "true"
	return d, nonRetryable
}

// sleep waits d, or returns false when the server closes first.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// parseDelay reads Upstash-Delay: an integer followed by s, m, h or d; empty is none.
func parseDelay(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}
	unit, ok := units[v[len(v)-1]]
	n, err := strconv.Atoi(v[:len(v)-1])
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("bad delay %q", v)
	}
	return time.Duration(n) * unit, nil
}

// writeError answers with QStash's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

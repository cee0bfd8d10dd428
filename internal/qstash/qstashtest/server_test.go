package qstashtest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/qstash"
	"github.com/parleyhq/parley/internal/qstash/qstashtest"
)

// wait bounds every wait on the stand-in; deliveries take milliseconds.
const wait = 10 * time.Second

// memReplays is an in-memory qstash.Replays.
type memReplays struct {
	mu   sync.Mutex
	done map[string]time.Time
}

func (m *memReplays) Seen(_ context.Context, messageID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.done[messageID]
	return ok, nil
}

func (m *memReplays) Done(_ context.Context, messageID string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done[messageID] = until
	return nil
}

// endpoint is a destination built with qstash.NewHandler.
type endpoint struct {
	url string
	srv *httptest.Server

	mu        sync.Mutex
	bodies    []string
	requests  []*http.Request // the last delivery's request, for the replay test
	rawBodies [][]byte
}

func (e *endpoint) delivered() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.bodies...)
}

// newEndpoint serves NewHandler on loopback; deliver decides each delivery's outcome.
func newEndpoint(t *testing.T, r *qstash.Receiver, deliver func(attempt int) error) *endpoint {
	t.Helper()
	e := &endpoint{}
	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		e.mu.Lock()
		e.requests = append(e.requests, req.Clone(context.Background()))
		e.rawBodies = append(e.rawBodies, raw)
		e.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(raw))
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(e.srv.Close)
	e.url = e.srv.URL + "/internal/qstash/step"
	attempts := 0
	h = qstash.NewHandler(qstash.HandlerConfig{
		Receiver: r,
		URL:      e.url,
		Replays:  &memReplays{done: map[string]time.Time{}},
		Deliver: func(_ context.Context, body []byte) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			attempts++
			if err := deliver(attempts); err != nil {
				return err
			}
			e.bodies = append(e.bodies, string(body))
			return nil
		},
	})
	return e
}

func succeed(int) error { return nil }

func publisher(s *qstashtest.Server) *qstash.Publisher {
	return qstash.NewPublisher(s.URL(), s.Token(), qstash.WithRetry(2, time.Millisecond, time.Millisecond))
}

func TestPublishDeliversSignedMessage(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), succeed)
	id, err := publisher(s).Publish(context.Background(), qstash.Message{
		Destination: e.url, Body: []byte(`{"step":"s_1"}`), ContentType: "application/json", Retries: qstash.DefaultRetries,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := s.WaitSucceeded(1, wait)
	want := []qstashtest.Delivery{{MessageID: id, Destination: e.url, Retried: 0, StatusCode: 200}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`{"step":"s_1"}`}, e.delivered()); diff != "" {
		t.Errorf("delivered bodies (-want +got):\n%s", diff)
	}
	e.mu.Lock()
	req := e.requests[0]
	e.mu.Unlock()
	if req.Header.Get("Content-Type") != "application/json" || req.Header.Get(qstash.HeaderMessageID) != id || req.Header.Get(qstash.HeaderRetried) != "0" {
		t.Errorf("delivery headers = %v", req.Header)
	}
	if p := s.Published(); len(p) != 1 || p[0].Header.Get("Authorization") != "" || string(p[0].Body) != `{"step":"s_1"}` {
		t.Errorf("Published = %+v, want the one publish, token removed", p)
	}
}

func TestReplayedDeliveryRefused(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), succeed)
	if _, err := publisher(s).Publish(context.Background(), qstash.Message{Destination: e.url, Body: []byte("once"), Retries: 0}); err != nil {
		t.Fatal(err)
	}
	s.WaitSucceeded(1, wait)
	// Send the captured delivery again, signature and all, as an eavesdropper would.
	e.mu.Lock()
	captured, raw := e.requests[0], e.rawBodies[0]
	e.mu.Unlock()
	replay, err := http.NewRequest(http.MethodPost, e.url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	replay.Header = captured.Header.Clone()
	resp, err := e.srv.Client().Do(replay)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay answered %d, want 401", resp.StatusCode)
	}
	if got := e.delivered(); len(got) != 1 {
		t.Errorf("Deliver ran %d times, want once", len(got))
	}
}

func TestDeduplication(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), succeed)
	p := publisher(s)
	m := qstash.Message{Destination: e.url, Body: []byte("step s_1"), DeduplicationID: "step-s_1", Retries: 0}
	first, err := p.Publish(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Publish(context.Background(), m)
	if err != nil || second != first {
		t.Fatalf("second Publish = %q, %v; want the first id %q", second, err, first)
	}
	if _, err := p.Publish(context.Background(), qstash.Message{Destination: e.url, Body: []byte("step s_2"), Retries: 0}); err != nil {
		t.Fatal(err)
	}
	got := s.WaitIdle(wait)
	if len(got) != 2 {
		t.Errorf("deliveries = %+v, want one per distinct message", got)
	}
	if pub := s.Published(); len(pub) != 3 || pub[0].Deduplicated || !pub[1].Deduplicated || pub[2].Deduplicated {
		t.Errorf("Published = %+v, want only the second deduplicated", pub)
	}
	if _, err := p.Publish(context.Background(), qstash.Message{Destination: e.url, DeduplicationID: "step:s_1"}); err == nil {
		t.Error("a deduplication id with ':' was accepted; QStash refuses it")
	}
}

func TestRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), func(attempt int) error {
		if attempt < 3 {
			return errors.New("database down")
		}
		return nil
	})
	id, err := publisher(s).Publish(context.Background(), qstash.Message{Destination: e.url, Body: []byte("x"), Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	got := s.WaitIdle(wait)
	want := []qstashtest.Delivery{
		{MessageID: id, Destination: e.url, Retried: 0, StatusCode: 500},
		{MessageID: id, Destination: e.url, Retried: 1, StatusCode: 500},
		{MessageID: id, Destination: e.url, Retried: 2, StatusCode: 200},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), func(int) error { return errors.New("down") })
	if _, err := publisher(s).Publish(context.Background(), qstash.Message{Destination: e.url, Retries: 1}); err != nil {
		t.Fatal(err)
	}
	if got := s.WaitIdle(wait); len(got) != 2 || got[1].StatusCode != 500 {
		t.Errorf("deliveries = %+v, want 1+1 failed attempts", got)
	}
}

func TestPermanentErrorStopsRetries(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), func(int) error {
		return qstash.Permanent(errors.New("no such step"))
	})
	id, err := publisher(s).Publish(context.Background(), qstash.Message{Destination: e.url, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []qstashtest.Delivery{{MessageID: id, Destination: e.url, StatusCode: qstash.StatusNonRetryable}}
	if diff := cmp.Diff(want, s.WaitIdle(wait)); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t, qstashtest.WithNextKeySigning())
	both := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), succeed)
	currentOnly := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), ""), succeed)
	p := publisher(s)
	for _, e := range []*endpoint{both, currentOnly} {
		if _, err := p.Publish(context.Background(), qstash.Message{Destination: e.url, Body: []byte("x"), Retries: 0}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for _, d := range s.WaitIdle(wait) {
		got[d.Destination] = d.StatusCode
	}
	if want := map[string]int{both.url: 200, currentOnly.url: 401}; !cmp.Equal(want, got) {
		t.Errorf("status by destination = %v, want %v", got, want)
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t, qstashtest.WithDelayScale(0.001))
	e := newEndpoint(t, qstash.NewReceiver(s.CurrentKey(), s.NextKey()), succeed)
	if _, err := publisher(s).Publish(context.Background(), qstash.Message{Destination: e.url, Delay: 10 * time.Second, Retries: 0}); err != nil {
		t.Fatal(err)
	}
	s.WaitSucceeded(1, wait)
	if got := s.Published()[0].Header.Get("Upstash-Delay"); got != "10s" {
		t.Errorf("Upstash-Delay = %q, want 10s", got)
	}
}

func TestBadToken(t *testing.T) {
	t.Parallel()
	s := qstashtest.New(t)
	_, err := qstash.NewPublisher(s.URL(), "wrong").Publish(context.Background(), qstash.Message{Destination: "http://127.0.0.1:1/step"})
	var se *qstash.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Publish with a wrong token = %v, want a 401 StatusError", err)
	}
	if len(s.Published()) != 0 {
		t.Error("a publish with a wrong token was recorded")
	}
}

package qstash_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleyhq/parley/internal/qstash"
)

// memReplays is an in-memory qstash.Replays.
type memReplays struct {
	mu      sync.Mutex
	until   map[string]time.Time
	seenErr error
}

func newMemReplays() *memReplays { return &memReplays{until: map[string]time.Time{}} }

func (m *memReplays) Seen(_ context.Context, messageID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seenErr != nil {
		return false, m.seenErr
	}
	_, ok := m.until[messageID]
	return ok, nil
}

func (m *memReplays) Done(_ context.Context, messageID string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.until[messageID] = until
	return nil
}

func (m *memReplays) doneUntil(messageID string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.until[messageID]
	return t, ok
}

func TestHandler(t *testing.T) {
	t.Parallel()
	body := []byte(`{"step":"s_1"}`)
	signature, err := qstash.NewSigner(currentKey).SignAt(body, endpoint, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		method     string
		body       []byte
		signature  string
		messageID  string
		replayed   bool // the same token was used before
		ranBefore  bool // the message ran before, under another token
		seenErr    error
		deliverErr error
		wantStatus int
		wantRun    bool
		wantDone   bool
	}{
		{name: "OK", wantStatus: 200, wantRun: true, wantDone: true},
		{name: "ErrReplayed", replayed: true, wantStatus: 401},
		{name: "RetryOfMessageThatRan", ranBefore: true, wantStatus: 200},
		{name: "ErrOversize", body: bytes.Repeat([]byte("x"), 65), wantStatus: 413},
		{name: "ErrDeliver", deliverErr: errors.New("database down"), wantStatus: 500, wantRun: true},
		{name: "ErrPermanent", deliverErr: qstash.Permanent(errors.New("no such step")), wantStatus: qstash.StatusNonRetryable, wantRun: true},
		{name: "ErrBadSignature", signature: signature[:len(signature)-2] + "xx", wantStatus: 401},
		{name: "ErrNoSignature", signature: "-", wantStatus: 401},
		{name: "ErrTamperedBody", body: []byte(`{"step":"s_2"}`), wantStatus: 401},
		{name: "ErrNoMessageID", messageID: "-", wantStatus: 401},
		{name: "ErrMethod", method: http.MethodGet, wantStatus: 405},
		{name: "ErrReplayCheck", seenErr: errors.New("database down"), wantStatus: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			replays := newMemReplays()
			replays.seenErr = tt.seenErr
			messageID := "msg_" + tt.name
			jti := tokenID(t, signature)
			if tt.replayed {
				replays.Done(context.Background(), "jti:"+jti, signedAt.Add(time.Hour))
			}
			if tt.ranBefore {
				replays.Done(context.Background(), "msg:"+messageID, signedAt.Add(time.Hour))
			}
			var ran [][]byte
			h := qstash.NewHandler(qstash.HandlerConfig{
				Receiver: qstash.NewReceiver(currentKey, nextKey, qstash.WithClock(at(signedAt.Add(time.Minute)))),
				URL:      endpoint,
				MaxBody:  64,
				Replays:  replays,
				Deliver: func(_ context.Context, b []byte) error {
					ran = append(ran, b)
					return tt.deliverErr
				},
				Log: slog.New(slog.NewTextHandler(&logs, nil)),
			})
			method, b, sig := cmp.Or(tt.method, http.MethodPost), tt.body, cmp.Or(tt.signature, signature)
			if b == nil {
				b = body
			}
			req := httptest.NewRequest(method, endpoint, bytes.NewReader(b))
			if sig != "-" {
				req.Header.Set(qstash.HeaderSignature, sig)
			}
			if tt.messageID != "-" {
				req.Header.Set(qstash.HeaderMessageID, messageID)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			if got := len(ran) == 1 && bytes.Equal(ran[0], body); got != tt.wantRun || len(ran) > 1 {
				t.Errorf("Deliver ran %d times with %q, want run=%v", len(ran), ran, tt.wantRun)
			}
			until, done := replays.doneUntil("jti:" + jti)
			if _, msgDone := replays.doneUntil("msg:" + messageID); msgDone != (tt.wantDone || tt.ranBefore) {
				t.Errorf("message recorded = %v, want %v", msgDone, tt.wantDone || tt.ranBefore)
			}
			if done != (tt.wantDone || tt.replayed) {
				t.Errorf("Done recorded = %v, want %v", done, tt.wantDone)
			}
			if tt.wantDone && !until.After(signedAt.Add(qstash.TokenLifetime)) {
				t.Errorf("Done until %v, want after the token's exp %v", until, signedAt.Add(qstash.TokenLifetime))
			}
			wantNonRetryable := ""
			if tt.wantStatus == qstash.StatusNonRetryable {
				wantNonRetryable = "true"
			}
			if got := rec.Header().Get(qstash.HeaderNonRetryableError); got != wantNonRetryable {
				t.Errorf("%s = %q, want %q", qstash.HeaderNonRetryableError, got, wantNonRetryable)
			}
			for _, secret := range []string{currentKey, nextKey, signature, "database down", "no such step"} {
				if strings.Contains(rec.Body.String(), secret) {
					t.Errorf("answer body %q holds %q", rec.Body, secret)
				}
			}
			for _, secret := range []string{currentKey, nextKey, signature, string(body)} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log %q holds %q", logs.String(), secret)
				}
			}
			if tt.wantStatus != 200 && tt.wantStatus != 405 && logs.Len() == 0 {
				t.Errorf("a %d was not logged", tt.wantStatus)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	cause := errors.New("no such step")
	err := qstash.Permanent(cause)
	if !qstash.IsPermanent(err) || !errors.Is(err, cause) {
		t.Errorf("Permanent(%v): IsPermanent=%v, Is(cause)=%v", cause, qstash.IsPermanent(err), errors.Is(err, cause))
	}
	if wrapped := errors.Join(errors.New("step s_1"), err); !qstash.IsPermanent(wrapped) {
		t.Error("a wrapped Permanent error is not permanent")
	}
	if qstash.IsPermanent(cause) || qstash.Permanent(nil) != nil {
		t.Error("an unmarked error is permanent, or Permanent(nil) is not nil")
	}
}

// tokenID reads a token's jti without verifying it (the test made it).
func tokenID(t *testing.T, token string) string {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatal(err)
	}
	if c.ID == "" {
		t.Fatal("the signer wrote no jti")
	}
	return c.ID
}

// A captured delivery replayed under another message id is still a
// replay: the signed jti gives it away.
func TestHandlerRefusesReplayUnderNewMessageID(t *testing.T) {
	const endpoint = "https://parley.example/tasks/agent-step"
	body := []byte(`{"step":1}`)
	signature, err := qstash.NewSigner("sig_current").Sign(body, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var runs int
	h := qstash.NewHandler(qstash.HandlerConfig{
		Receiver: qstash.NewReceiver("sig_current", "sig_next"), URL: endpoint, Replays: newMemReplays(),
		Deliver: func(context.Context, []byte) error { runs++; return nil },
	})
	for i, id := range []string{"msg_1", "msg_forged"} {
		req := httptest.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
		req.Header.Set(qstash.HeaderSignature, signature)
		req.Header.Set(qstash.HeaderMessageID, id)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if want := []int{200, 401}[i]; rec.Code != want {
			t.Errorf("delivery %d (%s): %d, want %d", i+1, id, rec.Code, want)
		}
	}
	if runs != 1 {
		t.Errorf("ran %d times, want once", runs)
	}
}

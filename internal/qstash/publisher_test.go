package qstash_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/qstash"
)

const publishToken = "qstash_token_eyJVc2VySUQiOiJ0ZXN0In0="

// seenRequest is what the fake QStash API received.
type seenRequest struct {
	Method, RequestURI string
	Header             map[string]string
	Body               string
}

// fakeAPI answers publishes with the given answers in turn (the last one repeats) and
// records every request.
type fakeAPI struct {
	mu       sync.Mutex
	requests []seenRequest
	answers  []func(http.ResponseWriter)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	header := map[string]string{}
	for name := range r.Header {
		if name != "Accept-Encoding" && name != "User-Agent" && name != "Content-Length" {
			header[name] = r.Header.Get(name)
		}
	}
	f.mu.Lock()
	f.requests = append(f.requests, seenRequest{r.Method, r.RequestURI, header, string(body)})
	answer := f.answers[min(len(f.requests), len(f.answers))-1]
	f.mu.Unlock()
	answer(w)
}

func (f *fakeAPI) seen() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.requests...)
}

func answer(status int, body string, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// startAPI serves f on loopback and returns a Publisher for it that retries fast.
func startAPI(tb testing.TB, f *fakeAPI) *qstash.Publisher {
	tb.Helper()
	srv := httptest.NewServer(f)
	tb.Cleanup(srv.Close)
	return qstash.NewPublisher(srv.URL+"/", publishToken, qstash.WithHTTPClient(srv.Client()),
		qstash.WithRetry(4, time.Millisecond, 5*time.Millisecond))
}

func TestPublish(t *testing.T) {
	t.Parallel()
	const destination = "https://parley.example/internal/qstash/step?run=7"
	full := qstash.Message{
		Destination:     destination,
		Body:            []byte(`{"step":"s_1"}`),
		ContentType:     "application/json",
		DeduplicationID: "step-s_1-attempt-2",
		Delay:           90*time.Second + 200*time.Millisecond,
		Retries:         2,
		Timeout:         30 * time.Second,
	}
	ok := answer(http.StatusCreated, `{"messageId":"msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWxPcak2rQD51EMjFMuzcW7qYXpPiDyw"}`)
	tests := []struct {
		name    string
		message qstash.Message
		answers []func(http.ResponseWriter)
		wantID  string
		want    []seenRequest
		wantErr int // the *StatusError's status, when an error is expected
	}{
		{
			name:    "OK",
			message: full,
			answers: []func(http.ResponseWriter){ok},
			wantID:  "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWxPcak2rQD51EMjFMuzcW7qYXpPiDyw",
			want: []seenRequest{{
				Method:     "POST",
				RequestURI: "/v2/publish/" + destination,
				Header: map[string]string{
					"Authorization":            "Bearer " + publishToken,
					"Content-Type":             "application/json",
					"Upstash-Method":           "POST",
					"Upstash-Deduplication-Id": "step-s_1-attempt-2",
					"Upstash-Delay":            "91s",
					"Upstash-Retries":          "2",
					"Upstash-Timeout":          "30s",
				},
				Body: `{"step":"s_1"}`,
			}},
		},
		{
			name:    "OKDefaults",
			message: qstash.Message{Destination: "http://127.0.0.1:8080/step", Body: []byte("x"), Retries: qstash.DefaultRetries},
			answers: []func(http.ResponseWriter){ok},
			wantID:  "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWxPcak2rQD51EMjFMuzcW7qYXpPiDyw",
			want: []seenRequest{{
				Method:     "POST",
				RequestURI: "/v2/publish/http://127.0.0.1:8080/step",
				Header:     map[string]string{"Authorization": "Bearer " + publishToken, "Upstash-Method": "POST"},
				Body:       "x",
			}},
		},
		{
			name:    "OKNoRetries",
			message: qstash.Message{Destination: "http://127.0.0.1:8080/step", Retries: 0},
			answers: []func(http.ResponseWriter){ok},
			wantID:  "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWxPcak2rQD51EMjFMuzcW7qYXpPiDyw",
			want: []seenRequest{{
				Method:     "POST",
				RequestURI: "/v2/publish/http://127.0.0.1:8080/step",
				Header:     map[string]string{"Authorization": "Bearer " + publishToken, "Upstash-Method": "POST", "Upstash-Retries": "0"},
			}},
		},
		{
			name:    "OKDeduplicated",
			message: full,
			answers: []func(http.ResponseWriter){answer(http.StatusAccepted, `{"messageId":"msg_first","deduplicated":true}`)},
			wantID:  "msg_first",
		},
		{
			name:    "OKAfter503",
			message: full,
			answers: []func(http.ResponseWriter){answer(503, `{"error":"unavailable"}`), answer(502, ``), ok},
			wantID:  "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWxPcak2rQD51EMjFMuzcW7qYXpPiDyw",
		},
		{
			name:    "OKAfter429RetryAfter",
			message: full,
			answers: []func(http.ResponseWriter){answer(429, `{"error":"rate limited"}`, "Retry-After", "0"), ok},
			wantID:  "msg_26hZCxZCuWyyTWPmSVBrNC1RADwpgWxPcak2rQD51EMjFMuzcW7qYXpPiDyw",
		},
		{
			name:    "Err400NotRetried",
			message: full,
			answers: []func(http.ResponseWriter){answer(400, `{"error":"invalid destination url"}`), ok},
			wantErr: 400,
		},
		{
			name:    "Err401NotRetried",
			message: full,
			answers: []func(http.ResponseWriter){answer(401, `{"error":"unauthorized"}`), ok},
			wantErr: 401,
		},
		{
			name:    "Err429RetryAfterTooLong",
			message: full,
			answers: []func(http.ResponseWriter){answer(429, `{"error":"daily quota"}`, "Retry-After", "3600"), ok},
			wantErr: 429,
		},
		{
			name:    "Err503Exhausted",
			message: full,
			answers: []func(http.ResponseWriter){answer(503, `{"error":"unavailable"}`)},
			wantErr: 503,
		},
		{
			name:    "ErrNoMessageID",
			message: full,
			answers: []func(http.ResponseWriter){answer(200, `{}`)},
			wantErr: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{answers: tt.answers}
			id, err := startAPI(t, api).Publish(context.Background(), tt.message)
			if tt.wantErr != 0 {
				var se *qstash.StatusError
				if !errors.As(err, &se) || se.StatusCode != tt.wantErr {
					t.Fatalf("Publish error = %v, want a StatusError %d", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), publishToken) {
					t.Fatalf("error %q holds the token", err)
				}
			} else if err != nil || id != tt.wantID {
				t.Fatalf("Publish = %q, %v; want %q", id, err, tt.wantID)
			}
			seen := api.seen()
			if tt.want != nil {
				if diff := cmp.Diff(tt.want, seen); diff != "" {
					t.Errorf("requests (-want +got):\n%s", diff)
				}
			}
			wantCount := map[string]int{"OKAfter503": 3, "OKAfter429RetryAfter": 2, "Err503Exhausted": 4}[tt.name]
			if wantCount == 0 {
				wantCount = 1
			}
			if len(seen) != wantCount {
				t.Errorf("%d requests, want %d", len(seen), wantCount)
			}
		})
	}
}

func TestPublishHonoursContext(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	// A backoff far longer than any test: only the context can end the wait.
	p := qstash.NewPublisher(srv.URL, publishToken, qstash.WithRetry(5, time.Hour, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := p.Publish(ctx, qstash.Message{Destination: "https://parley.example/step", Retries: qstash.DefaultRetries})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish error = %v, want context.Canceled", err)
	}
}

func TestPublishRefusesRelativeDestination(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{answers: []func(http.ResponseWriter){answer(201, `{"messageId":"msg_1"}`)}}
	for _, destination := range []string{"/step", "parley.example/step", "ftp://parley.example/step", ""} {
		if _, err := startAPI(t, api).Publish(context.Background(), qstash.Message{Destination: destination}); err == nil {
			t.Errorf("Publish to %q succeeded", destination)
		}
	}
	if n := len(api.seen()); n != 0 {
		t.Errorf("%d requests sent for invalid destinations", n)
	}
}

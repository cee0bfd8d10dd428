package llm

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// TestReleaseBody holds releaseBody to its promise: once next has
// returned, neither the request that net/http keeps for as long as the
// answer streams nor a retry's body reaches the body's bytes, while the
// body was written whole both times.
func TestReleaseBody(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("the conversation so far. "), 4<<10)
	want := len(body)
	gone := weak.Make(&body[0])
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	body = nil
	var (
		kept             *http.Request // as net/http's connection keeps it
		retried          io.ReadCloser // a retry's body, kept as long
		written, rewrote int64
	)
	res, err := releaseBody(req, func(r *http.Request) (*http.Response, error) {
		var err error
		if written, err = io.Copy(io.Discard, r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
		// A retry on a connection found dead (or a redirect) sends the
		// body again, from GetBody.
		if retried, err = r.GetBody(); err != nil {
			return nil, err
		}
		if rewrote, err = io.Copy(io.Discard, retried); err != nil {
			return nil, err
		}
		kept = r
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if written != int64(want) || rewrote != int64(want) {
		t.Fatalf("wrote %d bytes of the body and %d again, want %d", written, rewrote, want)
	}
	if _, err := kept.GetBody(); !errors.Is(err, errBodyReleased) {
		t.Errorf("GetBody after the response = %v, want errBodyReleased", err)
	}
	if _, err := kept.Body.Read(make([]byte, 1)); !errors.Is(err, errBodyReleased) {
		t.Errorf("Read after the response = %v, want errBodyReleased", err)
	}
	for range 3 {
		runtime.GC()
	}
	if gone.Value() != nil {
		t.Error("the request that is kept still reaches its body's bytes")
	}
	runtime.KeepAlive(kept)
	runtime.KeepAlive(retried)
	runtime.KeepAlive(res)
}

// TestOpenAIReleasesBody checks that a streamed answer's request lets its
// body go while the answer is still streaming.
func TestOpenAIReleasesBody(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewServer(t, llmtest.Hold())
	rec := &recordingTransport{next: http.DefaultTransport}
	p := NewOpenAI(OpenAIConfig{BaseURL: srv.URL, APIKey: "sk-test", HTTPClient: &http.Client{Transport: rec}})
	stream, err := p.Stream(t.Context(), chat.ModelRequest{Model: "gpt-test", Messages: []chat.PromptMessage{{Role: chat.RoleUser, Content: "Hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if _, err := reqs[0].GetBody(); !errors.Is(err, errBodyReleased) {
		t.Errorf("GetBody of the streaming answer's request = %v, want errBodyReleased", err)
	}
	// net/http closes the body from its write loop once the request is
	// written, which can come after the response's headers arrive (the
	// held fake answers them at once): wait for that, boundedly.
	var readErr error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, readErr = reqs[0].Body.Read(make([]byte, 1)); errors.Is(readErr, errBodyReleased) {
			break
		}
	}
	if !errors.Is(readErr, errBodyReleased) {
		t.Errorf("reading the streaming answer's request body = %v, want errBodyReleased (its bytes let go)", readErr)
	}
	srv.Release(len(llmtest.DefaultChunks))
	var text string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		d, err := stream.Recv()
		if err != nil {
			break
		}
		text += d.Text
	}
	if want := strings.Join(llmtest.DefaultChunks, ""); text != want {
		t.Errorf("answer %q, want %q", text, want)
	}
}

// recordingTransport keeps the requests it carries.
type recordingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recordingTransport) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

package llm_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// Both providers satisfy the interface the chat service will declare.
var (
	_ chat.Provider = (*llm.OpenAI)(nil)
	_ chat.Provider = (*llm.Offline)(nil)
)

const testKey = "sk-test-0123456789abcdef"

// waitLimit bounds every wait for something asynchronous, so a regression
// fails the test instead of hanging it.
const waitLimit = 5 * time.Second

var testRequest = chat.ModelRequest{
	Model: "gpt-test",
	Messages: []chat.PromptMessage{
		{Role: chat.RoleSystem, Content: "Be brief."},
		{Role: chat.RoleUser, Content: "Hi"},
		{Role: chat.RoleAssistant, Content: "Hello!"},
		{Role: chat.RoleUser, Content: "Tell me a joke."},
	},
	MaxTokens: 100,
}

// newOpenAI returns a provider talking to srv with the real openai-go client.
func newOpenAI(tb testing.TB, srv *llmtest.Server, cfg llm.OpenAIConfig) *llm.OpenAI {
	tb.Helper()
	cfg.BaseURL = srv.URL
	cfg.APIKey = testKey
	return llm.NewOpenAI(cfg)
}

// collect reads s to its end and returns the deltas received and the error
// that ended the stream, nil for io.EOF. It fails the test if the stream
// yields more than a sane number of deltas.
func collect(tb testing.TB, s chat.ModelStream) ([]string, error) {
	tb.Helper()
	var deltas []string
	for range 10_000 {
		delta, err := s.Recv()
		if err == io.EOF {
			return deltas, nil
		}
		if err != nil {
			return deltas, err
		}
		if delta.ToolCall != nil {
			tb.Fatalf("unexpected tool call delta %+v", *delta.ToolCall)
		}
		deltas = append(deltas, delta.Text)
	}
	tb.Fatal("stream did not end")
	return nil, nil
}

// mustAppErr returns err as an *apperr.Error with the wanted code.
func mustAppErr(tb testing.TB, err error, want apperr.Code) *apperr.Error {
	tb.Helper()
	var appErr *apperr.Error
	if !errors.As(err, &appErr) {
		tb.Fatalf("error = %v (%T), want *apperr.Error", err, err)
	}
	if appErr.Code != want {
		tb.Fatalf("code = %q, want %q (error: %v)", appErr.Code, want, err)
	}
	return appErr
}

func TestOpenAIStream(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Chunks([]string{"Why", " did", " the", " gopher", "…"}), llmtest.Usage(31, 5))
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()

		deltas, err := collect(t, stream)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"Why", " did", " the", " gopher", "…"}, deltas); diff != "" {
			t.Errorf("deltas (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(chat.Usage{PromptTokens: 31, CompletionTokens: 5}, stream.Usage()); diff != "" {
			t.Errorf("usage (-want +got):\n%s", diff)
		}
		if got := stream.FinishReason(); got != "stop" {
			t.Errorf("finish reason = %q, want stop", got)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Errorf("Recv after the end = %v, want io.EOF", err)
		}
		want := []llmtest.RecordedRequest{{
			Model: "gpt-test",
			Messages: []llmtest.RecordedMessage{
				{Role: "system", Content: "Be brief."},
				{Role: "user", Content: "Hi"},
				{Role: "assistant", Content: "Hello!"},
				{Role: "user", Content: "Tell me a joke."},
			},
			Stream:              true,
			IncludeUsage:        true,
			MaxCompletionTokens: 100,
			Authorization:       "Bearer " + testKey,
		}}
		if diff := cmp.Diff(want, srv.Requests()); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
		if got := srv.Canceled(); got != 0 {
			t.Errorf("server saw %d canceled streams, want 0", got)
		}
	})

	t.Run("OKIdleTimeoutIsPerChunk", func(t *testing.T) {
		t.Parallel()
		// Ten chunks 50ms apart take longer than the idle timeout in
		// total, yet each gap is well inside it.
		srv := llmtest.NewServer(t, llmtest.Chunks(llmtest.FixedChunks(10, 4)), llmtest.Interval(50*time.Millisecond))
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{IdleTimeout: 400 * time.Millisecond}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		deltas, err := collect(t, stream)
		if err != nil {
			t.Fatal(err)
		}
		if len(deltas) != 10 {
			t.Errorf("got %d deltas, want 10", len(deltas))
		}
	})

	t.Run("OKSlowReader", func(t *testing.T) {
		t.Parallel()
		// A caller that takes longer than the idle timeout between Recv
		// calls is not a stalled provider: the idle clock runs only while
		// Recv waits. The fake clock moves past the timeout between calls.
		clk := clock.NewFake(time.Now())
		// Each chunk leaves the server only after the clock moved, so none
		// is buffered before an idle timer could have fired.
		srv := llmtest.NewServer(t, llmtest.Chunks([]string{"slow", " reader"}), llmtest.Hold())
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{IdleTimeout: 200 * time.Millisecond, Clock: clk}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		for {
			clk.Advance(300 * time.Millisecond)
			srv.Release(1)
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("OKRetryBeforeFirstByte", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Fail429("0"), llmtest.Times(1))
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{MaxRetries: 1}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		deltas, err := collect(t, stream)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(deltas, ""), strings.Join(llmtest.DefaultChunks, ""); got != want {
			t.Errorf("answer = %q, want %q", got, want)
		}
		if got := len(srv.Requests()); got != 2 {
			t.Errorf("server got %d requests, want 2", got)
		}
	})

	t.Run("OKUsageEstimatedBeforeEnd", func(t *testing.T) {
		t.Parallel()
		// An answer stopped before the provider's usage chunk still leaves
		// budgets something to count.
		srv := llmtest.NewServer(t, llmtest.Chunks([]string{"abcdefgh"}), llmtest.Hold())
		srv.Release(1)
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		var prompt int64
		for _, m := range testRequest.Messages {
			prompt += int64(chat.EstimateTokens(m.Content))
		}
		if diff := cmp.Diff(chat.Usage{PromptTokens: prompt, CompletionTokens: 2}, stream.Usage()); diff != "" {
			t.Errorf("usage (-want +got):\n%s", diff)
		}
	})
}

func TestOpenAIStreamErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name           string
		opts           []llmtest.Option
		idleTimeout    time.Duration
		wantDeltas     []string // received before the error
		wantCode       apperr.Code
		wantField      string
		wantRetryAfter int
		wantCanceled   int // streams the server saw abandoned
	}{
		{
			name:           "ErrResourceExhausted",
			opts:           []llmtest.Option{llmtest.Fail429("7")},
			wantCode:       apperr.ResourceExhausted,
			wantRetryAfter: 7,
		},
		{
			name:           "ErrResourceExhaustedWithoutRetryAfter",
			opts:           []llmtest.Option{llmtest.Fail429("")},
			wantCode:       apperr.ResourceExhausted,
			wantRetryAfter: 1,
		},
		{
			name:     "ErrUnavailable",
			opts:     []llmtest.Option{llmtest.Fail500()},
			wantCode: apperr.Unavailable,
		},
		{
			name:     "ErrUnavailableBadGateway",
			opts:     []llmtest.Option{llmtest.Fail(502, "", "upstream connect error")},
			wantCode: apperr.Unavailable,
		},
		{
			name:       "ErrUnavailableCut",
			opts:       []llmtest.Option{llmtest.CutAfter(2)},
			wantDeltas: llmtest.DefaultChunks[:2],
			wantCode:   apperr.Unavailable,
		},
		{
			name:     "ErrUnavailableCutBeforeContent",
			opts:     []llmtest.Option{llmtest.CutAfter(0)},
			wantCode: apperr.Unavailable,
		},
		{
			name:       "ErrUnavailableMalformed",
			opts:       []llmtest.Option{llmtest.MalformedAfter(1)},
			wantDeltas: llmtest.DefaultChunks[:1],
			wantCode:   apperr.Unavailable,
		},
		{
			name:         "ErrDeadlineExceeded",
			opts:         []llmtest.Option{llmtest.Interval(time.Minute)},
			idleTimeout:  100 * time.Millisecond,
			wantCode:     apperr.DeadlineExceeded,
			wantCanceled: 1,
		},
		{
			name: "ErrInvalidContextLength",
			opts: []llmtest.Option{llmtest.Fail(400, "context_length_exceeded",
				"This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens.")},
			wantCode:  apperr.Invalid,
			wantField: "messages",
		},
		{
			name:     "ErrInternalBadRequest",
			opts:     []llmtest.Option{llmtest.Fail(400, "invalid_value", "Invalid value for 'temperature'.")},
			wantCode: apperr.Internal,
		},
		{
			name:     "ErrInternalUnknownModel",
			opts:     []llmtest.Option{llmtest.Fail(404, "model_not_found", "The model `gpt-test` does not exist.")},
			wantCode: apperr.Internal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := llmtest.NewServer(t, tt.opts...)
			provider := newOpenAI(t, srv, llm.OpenAIConfig{IdleTimeout: tt.idleTimeout})

			start := time.Now()
			var deltas []string
			stream, err := provider.Stream(t.Context(), testRequest)
			if err == nil {
				defer stream.Close()
				deltas, err = collect(t, stream)
				if err == nil {
					t.Fatal("stream ended without an error")
				}
				if _, again := stream.Recv(); again != err {
					t.Errorf("Recv after the error = %v, want the same error %v", again, err)
				}
			}
			if elapsed := time.Since(start); elapsed > waitLimit {
				t.Errorf("took %v to fail", elapsed)
			}
			t.Logf("error: %v", err)
			appErr := mustAppErr(t, err, tt.wantCode)
			if diff := cmp.Diff(tt.wantDeltas, deltas); diff != "" {
				t.Errorf("deltas before the error (-want +got):\n%s", diff)
			}
			if appErr.Field != tt.wantField {
				t.Errorf("field = %q, want %q", appErr.Field, tt.wantField)
			}
			if appErr.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %d, want %d", appErr.RetryAfter, tt.wantRetryAfter)
			}
			if appErr.Message == "" || appErr.Err == nil {
				t.Errorf("error = %#v, want a client message and a cause", appErr)
			}
			if tt.wantCanceled > 0 && !srv.WaitCanceled(tt.wantCanceled, waitLimit) {
				t.Errorf("server saw %d canceled streams, want %d", srv.Canceled(), tt.wantCanceled)
			}
		})
	}

	t.Run("ErrInternalCredentialsRejected", func(t *testing.T) {
		t.Parallel()
		// Real providers echo (part of) the key in their 401 message; none
		// of it may end up in an error that gets logged.
		srv := llmtest.NewServer(t, llmtest.Fail(401, "invalid_api_key", "Incorrect API key provided: "+testKey+"."))
		_, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), testRequest)
		appErr := mustAppErr(t, err, apperr.Internal)
		if !strings.Contains(appErr.Message, "credentials") {
			t.Errorf("message = %q, want it to mention credentials", appErr.Message)
		}
		for _, secret := range []string{testKey, testKey[len(testKey)-6:]} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the API key", err)
			}
		}
	})

	t.Run("ErrUnavailableConnectionRefused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: "http://" + addr + "/v1"})
		_, err = provider.Stream(t.Context(), testRequest)
		mustAppErr(t, err, apperr.Unavailable)
	})

	t.Run("ErrInternalBadBaseURL", func(t *testing.T) {
		t.Parallel()
		_, err := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: "localhost:11434"}).Stream(t.Context(), testRequest)
		mustAppErr(t, err, apperr.Internal)
	})

	t.Run("ErrInvalidNoMessages", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t)
		_, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), chat.ModelRequest{Model: "gpt-test"})
		if appErr := mustAppErr(t, err, apperr.Invalid); appErr.Field != "messages" {
			t.Errorf("field = %q, want messages", appErr.Field)
		}
		if got := len(srv.Requests()); got != 0 {
			t.Errorf("server got %d requests, want 0", got)
		}
	})

	t.Run("ErrInternalNoModel", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t)
		req := testRequest
		req.Model = ""
		_, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), req)
		mustAppErr(t, err, apperr.Internal)
	})
}

func TestOpenAIStreamCancel(t *testing.T) {
	t.Parallel()

	t.Run("ErrCanceledClose", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Hold())
		srv.Release(1)
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		if delta, err := stream.Recv(); err != nil || delta.Text != llmtest.DefaultChunks[0] {
			t.Fatalf("Recv = %q, %v; want %q", delta.Text, err, llmtest.DefaultChunks[0])
		}
		if err := stream.Close(); err != nil {
			t.Fatal(err)
		}
		if err := stream.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if !srv.WaitCanceled(1, waitLimit) {
			t.Fatal("server did not see the stream canceled")
		}
		_, err = stream.Recv()
		mustAppErr(t, err, apperr.Canceled)
	})

	t.Run("ErrCanceledCloseDuringRecv", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Hold())
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), testRequest)
		if err != nil {
			t.Fatal(err)
		}
		recvErr := make(chan error, 1)
		go func() {
			_, err := stream.Recv()
			recvErr <- err
		}()
		time.Sleep(20 * time.Millisecond) // let Recv block on the held chunk
		stream.Close()
		select {
		case err := <-recvErr:
			mustAppErr(t, err, apperr.Canceled)
		case <-time.After(waitLimit):
			t.Fatal("Close did not wake Recv")
		}
		if !srv.WaitCanceled(1, waitLimit) {
			t.Fatal("server did not see the stream canceled")
		}
	})

	t.Run("ErrCanceledContext", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Hold())
		srv.Release(1)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(ctx, testRequest)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(20*time.Millisecond, cancel)
		_, err = stream.Recv()
		mustAppErr(t, err, apperr.Canceled)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
		if !srv.WaitCanceled(1, waitLimit) {
			t.Fatal("server did not see the stream canceled")
		}
	})

	t.Run("ErrCanceledBeforeStart", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(ctx, testRequest)
		mustAppErr(t, err, apperr.Canceled)
	})

	t.Run("ErrDeadlineExceededContext", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Hold())
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		// Under load the deadline may pass before the response headers
		// arrive; either way the caller must see DeadlineExceeded.
		stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(ctx, testRequest)
		if err == nil {
			defer stream.Close()
			_, err = stream.Recv()
		}
		mustAppErr(t, err, apperr.DeadlineExceeded)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
		}
	})
}

func TestOpenAITemperature(t *testing.T) {
	t.Parallel()
	zero := 0.0
	for name, tc := range map[string]struct {
		temperature *float64
	}{"Unset": {nil}, "Zero": {&zero}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := llmtest.NewServer(t, llmtest.Chunks([]string{"ok"}))
			req := testRequest
			req.Temperature = tc.temperature
			stream, err := newOpenAI(t, srv, llm.OpenAIConfig{}).Stream(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if _, err := collect(t, stream); err != nil {
				t.Fatal(err)
			}
			got := srv.Requests()
			if len(got) != 1 || !cmp.Equal(got[0].Temperature, tc.temperature) {
				t.Fatalf("temperature sent: %v, want %v", got, tc.temperature)
			}
		})
	}
}

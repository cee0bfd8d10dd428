package llmtest_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// post sends a raw streaming request and returns the data lines of the
// response, so the wire format is checked without any client library.
func post(tb testing.TB, srv *llmtest.Server, body string) (*http.Response, []string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodPost, srv.URL+"/chat/completions", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var data []string
	scanner := bufio.NewScanner(res.Body)
	for scanner.Scan() {
		if line, ok := strings.CutPrefix(scanner.Text(), "data: "); ok {
			data = append(data, line)
		}
	}
	if err := scanner.Err(); err != nil {
		tb.Fatal(err)
	}
	return res, data
}

// wireChunk is a chunk as OpenAI documents it.
type wireChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func TestServer(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Chunks([]string{"Hi", " you"}), llmtest.Usage(7, 2))
		res, data := post(t, srv, `{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hey"}]}`)
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("Content-Type = %q", ct)
		}
		if len(data) != 6 || data[5] != "[DONE]" {
			t.Fatalf("data lines = %q, want role, 2 contents, finish, usage, [DONE]", data)
		}
		var chunks []wireChunk
		for _, line := range data[:5] {
			var c wireChunk
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				t.Fatalf("chunk %s: %v", line, err)
			}
			if c.ID == "" || c.ID != chunks0(chunks, c).ID || c.Object != "chat.completion.chunk" || c.Created == 0 || c.Model != "m1" {
				t.Errorf("chunk envelope wrong: %s", line)
			}
			chunks = append(chunks, c)
		}
		if d := chunks[0].Choices[0].Delta; d.Role != "assistant" {
			t.Errorf("first delta = %+v, want the assistant role", d)
		}
		for i, want := range []string{"Hi", " you"} {
			if got := chunks[i+1].Choices[0].Delta.Content; got == nil || *got != want {
				t.Errorf("content delta %d = %v, want %q", i, got, want)
			}
		}
		finish := chunks[3].Choices[0]
		if finish.FinishReason == nil || *finish.FinishReason != "stop" || finish.Delta.Content != nil {
			t.Errorf("finish chunk = %s", data[3])
		}
		if len(chunks[4].Choices) != 0 || chunks[4].Usage == nil || chunks[4].Usage.TotalTokens != 9 {
			t.Errorf("usage chunk = %s", data[4])
		}
		want := []llmtest.RecordedRequest{{
			Model:        "m1",
			Messages:     []llmtest.RecordedMessage{{Role: "user", Content: "hey"}},
			Stream:       true,
			IncludeUsage: true,
		}}
		if diff := cmp.Diff(want, srv.Requests()); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
	})

	t.Run("OKWithoutUsage", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t)
		_, data := post(t, srv, `{"model":"m1","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"hey"}]}]}`)
		if want := len(llmtest.DefaultChunks) + 3; len(data) != want {
			t.Fatalf("got %d data lines, want %d: %q", len(data), want, data)
		}
		for _, line := range data[:len(data)-1] {
			if strings.Contains(line, `"usage"`) {
				t.Errorf("chunk has usage although the request did not ask: %s", line)
			}
		}
		if got := srv.Requests()[0].Messages[0].Content; got != "hey" {
			t.Errorf("content parts recorded as %q, want hey", got)
		}
	})

	t.Run("OKFailTimes", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Fail429("3"), llmtest.Times(1))
		res, _ := post(t, srv, `{"model":"m1","stream":true,"messages":[]}`)
		if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "3" {
			t.Errorf("first response = %d, Retry-After %q; want 429, 3", res.StatusCode, res.Header.Get("Retry-After"))
		}
		if res, _ := post(t, srv, `{"model":"m1","stream":true,"messages":[]}`); res.StatusCode != http.StatusOK {
			t.Errorf("second response = %d, want 200", res.StatusCode)
		}
	})

	t.Run("OKFixedChunks", func(t *testing.T) {
		t.Parallel()
		chunks := llmtest.FixedChunks(64, 16)
		if len(chunks) != 64 {
			t.Fatalf("got %d chunks, want 64", len(chunks))
		}
		seen := map[string]bool{}
		for _, c := range chunks {
			if len(c) != 16 || seen[c] {
				t.Errorf("chunk %q: want 16 bytes and unique", c)
			}
			seen[c] = true
		}
	})

	t.Run("OKPaced", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t, llmtest.Paced())
		start := time.Now()
		_, data := post(t, srv, `{"model":"m1","stream":true,"messages":[]}`)
		if elapsed, min := time.Since(start), 64*20*time.Millisecond; elapsed < min {
			t.Errorf("answer took %v, want at least %v", elapsed, min)
		}
		if want := 64 + 3; len(data) != want {
			t.Fatalf("got %d data lines, want %d", len(data), want)
		}
		for _, line := range data[1:65] {
			var c wireChunk
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				t.Fatal(err)
			}
			if content := c.Choices[0].Delta.Content; content == nil || len(*content) != 16 {
				t.Errorf("content chunk %s: want 16 bytes of content", line)
			}
		}
	})

	t.Run("ErrNotStreaming", func(t *testing.T) {
		t.Parallel()
		srv := llmtest.NewServer(t)
		if res, _ := post(t, srv, `{"model":"m1","messages":[]}`); res.StatusCode != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", res.StatusCode)
		}
	})
}

// chunks0 returns the first chunk seen, or c itself for the first one, so
// every chunk's id can be compared with the first's.
func chunks0(chunks []wireChunk, c wireChunk) wireChunk {
	if len(chunks) == 0 {
		return c
	}
	return chunks[0]
}

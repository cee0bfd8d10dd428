// Package llmtest provides a fake OpenAI-compatible Chat Completions server
// for tests. It speaks the real streaming wire format, so tests exercise the
// actual openai-go client and transport, and it can fail in every way a
// provider does: error statuses, broken connections, malformed chunks,
// stalls.
//
// A test points the real provider at it:
//
//	srv := llmtest.NewServer(t, llmtest.Chunks([]string{"Hi", " there"}))
//	provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: srv.URL})
//
// and a benchmark of the streaming path uses the standard paced answer:
//
//	srv := llmtest.NewServer(b, llmtest.Paced())
package llmtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultChunks is the answer a server streams unless Chunks says otherwise.
// Tests compare against it; none may modify it.
var DefaultChunks = []string{"Hello", " from", " the", " fake", " model."}

// Server is a fake provider on a loopback httptest server.
type Server struct {
	// URL is the base URL to give the client, ending in /v1.
	URL string

	ts       *httptest.Server
	stop     chan struct{} // closed at shutdown so held handlers return
	stopOnce sync.Once
	gate     chan struct{} // one token per content chunk while held

	mu       sync.Mutex
	cfg      config
	requests []RecordedRequest
	canceled int
	seq      int
}

// RecordedRequest is a decoded request body, for assertions.
type RecordedRequest struct {
	Model               string
	Messages            []RecordedMessage
	Stream              bool
	IncludeUsage        bool // stream_options.include_usage
	MaxTokens           int  // max_tokens, 0 when absent
	MaxCompletionTokens int  // max_completion_tokens, 0 when absent
	// Temperature is the request's temperature, nil when absent.
	Temperature   *float64
	Authorization string
	Tools         []string // the names of the tools offered
	// Platform lists the X-Stainless-* headers describing the client's
	// platform (language, OS, architecture, runtime and their versions)
	// that the request carried, by name; nil when none.
	Platform []string
}

// RecordedMessage is one message of a RecordedRequest. Content given as an
// array of parts is joined into one string.
type RecordedMessage struct {
	Role    string
	Content string
	// ToolCalls are an assistant message's calls; ToolCallID the call a
	// tool message answers.
	ToolCalls  []Call
	ToolCallID string
	// Images are the image_url parts of a user message, in order.
	Images []Image
}

// Image is an image_url content part as the model received it. A data:
// URL is decoded into MediaType and Data; any other URL is left in URL.
type Image struct {
	URL       string
	MediaType string
	Data      []byte
}

// Call is a tool call: scripted for the server to make (see Turns), or
// recorded from a request's assistant message.
type Call struct{ ID, Name, Arguments string }

// Turn is one scripted answer: its text chunks, then its tool calls (the
// finish reason is then "tool_calls").
type Turn struct {
	Chunks []string
	Calls  []Call
}

// config is what a request is answered with. Handlers copy it when a
// request arrives, so changes apply from the next request on.
type config struct {
	chunks         []string
	interval       time.Duration
	failStatus     int
	failCode       string
	failMessage    string
	retryAfter     string
	failTimes      int // failures left; 0 means every request fails
	cutAfter       int // -1 when off
	malformedAfter int // -1 when off
	usage          *[2]int
	hold           bool
	turns          []Turn // scripted answers, one per request; then chunks
	respond        func(RecordedRequest) Turn
}

func defaultConfig() config {
	return config{chunks: DefaultChunks, cutAfter: -1, malformedAfter: -1}
}

// Option changes how the server answers.
type Option func(*config)

// Chunks sets the content deltas, sent in order.
func Chunks(chunks []string) Option {
	return func(c *config) { c.chunks = append([]string(nil), chunks...) }
}

// Turns scripts the next answers, one per request in order; requests
// after them get Chunks. Tool calls stream their arguments in small
// pieces, as OpenAI does.
func Turns(turns ...Turn) Option {
	return func(c *config) { c.turns = append([]Turn(nil), turns...) }
}

// Respond answers every request with the turn f makes from it, so a
// script can use what earlier turns returned (the id a tool call's result
// named, say). It wins over Turns and Chunks. f runs under the server's
// lock, so it must not call the Server's methods.
func Respond(f func(RecordedRequest) Turn) Option {
	return func(c *config) { c.respond = f }
}

// Interval waits d before each content chunk.
func Interval(d time.Duration) Option {
	return func(c *config) { c.interval = d }
}

// Fail makes requests fail with status and an OpenAI-style error body
// carrying code and message, until Succeed.
func Fail(status int, code, message string) Option {
	return func(c *config) {
		c.failStatus, c.failCode, c.failMessage, c.retryAfter, c.failTimes = status, code, message, "", 0
	}
}

// Fail429 makes requests fail with 429 Too Many Requests and, when
// retryAfter is not empty, that Retry-After header.
func Fail429(retryAfter string) Option {
	return func(c *config) {
		Fail(http.StatusTooManyRequests, "rate_limit_exceeded", "Rate limit reached, please slow down.")(c)
		c.retryAfter = retryAfter
	}
}

// Fail500 makes requests fail with 500 Internal Server Error.
func Fail500() Option {
	return Fail(http.StatusInternalServerError, "server_error", "The server had an error while processing your request.")
}

// Times limits the failure set by an earlier option to the next n requests;
// later ones succeed. Use it to test retries.
func Times(n int) Option {
	return func(c *config) { c.failTimes = n }
}

// CutAfter closes the connection abruptly after n content chunks, without a
// finish reason or [DONE], like a provider or proxy that died mid-answer.
func CutAfter(n int) Option {
	return func(c *config) { c.cutAfter = n }
}

// MalformedAfter sends a data line that is not valid JSON after n content
// chunks, then ends the response.
func MalformedAfter(n int) Option {
	return func(c *config) { c.malformedAfter = n }
}

// Usage sets the token counts reported in the usage chunk. Without it they
// are estimated from the request and the chunks.
func Usage(prompt, completion int) Option {
	return func(c *config) { c.usage = &[2]int{prompt, completion} }
}

// Hold makes every content chunk wait for Release, so a test decides
// exactly how far an answer gets, e.g. before stopping it. The role chunk
// and the response headers are sent at once.
func Hold() Option {
	return func(c *config) { c.hold = true }
}

// FixedChunks returns n chunks of exactly size bytes each (a leading space
// and filler letters), for tests and benchmarks that need a known volume.
func FixedChunks(n, size int) []string {
	chunks := make([]string, n)
	for i := range chunks {
		word := fmt.Sprintf(" w%d", i) + strings.Repeat("x", max(size, 0))
		chunks[i] = word[:max(size, 0)]
	}
	return chunks
}

// Paced streams 64 chunks of 16 bytes 20ms apart (about 1.3 s, 1 KiB), which
// is roughly how a real model paces a short answer. Benchmarks of the
// streaming path use it as their standard answer.
func Paced() Option {
	return func(c *config) {
		Chunks(FixedChunks(64, 16))(c)
		Interval(20 * time.Millisecond)(c)
	}
}

// NewServer starts a server answering with opts applied to the defaults. It
// is closed in tb.Cleanup.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{
		stop: make(chan struct{}),
		gate: make(chan struct{}, 1<<16),
		cfg:  defaultConfig(),
	}
	s.Configure(opts...)
	s.ts = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.ts.URL + "/v1"
	tb.Cleanup(s.Close)
	return s
}

// Configure applies opts on top of the current configuration; requests that
// arrive afterwards see the change. It is safe to call concurrently.
func (s *Server) Configure(opts ...Option) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, opt := range opts {
		opt(&s.cfg)
	}
}

// Release lets n more content chunks through a held server, shared by all
// of its streams.
func (s *Server) Release(n int) {
	for range n {
		s.gate <- struct{}{}
	}
}

// Unhold undoes Hold for the requests that arrive from now on, and drops
// the chunks released but not used, so that a later Hold starts from none.
// Call it once no held stream is waiting for Release.
func (s *Server) Unhold() {
	s.mu.Lock()
	s.cfg.hold = false
	s.mu.Unlock()
	for {
		select {
		case <-s.gate:
		default:
			return
		}
	}
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RecordedRequest(nil), s.requests...)
}

// Canceled counts the streams the client abandoned before their end: the
// request's context ended while the handler was still answering.
func (s *Server) Canceled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canceled
}

// WaitCanceled waits up to timeout for Canceled to reach n and reports
// whether it did. Cancellation reaches the server asynchronously, when it
// notices the closed connection, so tests must poll rather than read once.
func (s *Server) WaitCanceled(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if s.Canceled() >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close shuts the server down before the test ends, e.g. to test a provider
// that went away. It is safe to call before the cleanup does.
func (s *Server) Close() {
	// Handlers blocked in Hold or Interval must return first, because
	// httptest.Server.Close waits for every handler.
	s.stopOnce.Do(func() { close(s.stop) })
	s.ts.Close()
}

// requestBody is the part of a Chat Completions request the server reads.
type requestBody struct {
	Model    string `json:"model"`
	Messages []struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCallID string          `json:"tool_call_id"`
		ToolCalls  []struct {
			ID       string `json:"id"`
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           int      `json:"max_tokens"`
	MaxCompletionTokens int      `json:"max_completion_tokens"`
	Temperature         *float64 `json:"temperature"`
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		writeError(w, http.StatusNotFound, "unknown_url", "Unknown request URL: "+r.Method+" "+r.URL.Path, "")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/json", "")
		return
	}
	var body requestBody
	// Images arrive inline as data: URLs, hence room for several.
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "We could not parse the JSON body of your request.", "")
		return
	}
	rec := RecordedRequest{
		Model:               body.Model,
		Stream:              body.Stream,
		IncludeUsage:        body.StreamOptions != nil && body.StreamOptions.IncludeUsage,
		MaxTokens:           body.MaxTokens,
		MaxCompletionTokens: body.MaxCompletionTokens,
		Temperature:         body.Temperature,
		Authorization:       r.Header.Get("Authorization"),
	}
	for name := range r.Header {
		if strings.HasPrefix(name, "X-Stainless-") && name != "X-Stainless-Retry-Count" && name != "X-Stainless-Timeout" {
			rec.Platform = append(rec.Platform, name)
		}
	}
	slices.Sort(rec.Platform)
	for _, m := range body.Messages {
		msg := RecordedMessage{Role: m.Role, Content: contentText(m.Content), Images: contentImages(m.Content), ToolCallID: m.ToolCallID}
		for _, c := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, Call{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
		}
		rec.Messages = append(rec.Messages, msg)
	}
	for _, t := range body.Tools {
		rec.Tools = append(rec.Tools, t.Function.Name)
	}

	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.seq++
	id := fmt.Sprintf("chatcmpl-fake%d", s.seq)
	cfg := s.cfg
	var calls []Call
	if s.cfg.respond != nil {
		t := s.cfg.respond(rec)
		cfg.chunks, calls = t.Chunks, t.Calls
	} else if len(s.cfg.turns) > 0 {
		t := s.cfg.turns[0]
		s.cfg.turns = s.cfg.turns[1:]
		cfg.chunks, calls = t.Chunks, t.Calls
	}
	if cfg.failStatus != 0 && s.cfg.failTimes > 0 {
		s.cfg.failTimes--
		if s.cfg.failTimes == 0 {
			s.cfg.failStatus = 0
		}
	}
	s.mu.Unlock()

	if cfg.failStatus != 0 {
		writeError(w, cfg.failStatus, cfg.failCode, cfg.failMessage, cfg.retryAfter)
		return
	}
	if !body.Stream {
		writeError(w, http.StatusBadRequest, "invalid_request", "This fake server only streams; set stream to true.", "")
		return
	}
	s.stream(w, r, id, rec, cfg, calls)
}

// stream writes the SSE answer: role chunk, content chunks, finish chunk,
// usage chunk when asked for, [DONE].
func (s *Server) stream(w http.ResponseWriter, r *http.Request, id string, rec RecordedRequest, cfg config, calls []Call) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)

	created := time.Now().Unix()
	usageField := json.RawMessage(nil)
	if rec.IncludeUsage {
		usageField = json.RawMessage("null") // what OpenAI sends on all but the last chunk
	}
	send := func(c chunk) bool {
		c.ID, c.Object, c.Created, c.Model = id, "chat.completion.chunk", created, rec.Model
		if c.Usage == nil {
			c.Usage = usageField
		}
		data, err := json.Marshal(c)
		if err != nil {
			panic(err) // a bug in this file
		}
		return s.write(w, rc, ctx, "data: "+string(data)+"\n\n")
	}
	empty := ""
	if !send(chunk{Choices: []choice{{Delta: delta{Role: "assistant", Content: &empty}}}}) {
		return
	}

	for i := 0; ; i++ {
		if i == cfg.cutAfter {
			// Dropping the connection without the terminating chunk is
			// what a crashed upstream looks like to the client.
			panic(http.ErrAbortHandler)
		}
		if i == cfg.malformedAfter {
			s.write(w, rc, ctx, "data: {\"id\":\""+id+"\",\"choices\":[{\"delta\":\n\n")
			return
		}
		if i == len(cfg.chunks) {
			break
		}
		if !s.wait(ctx, cfg) {
			return
		}
		text := cfg.chunks[i]
		if !send(chunk{Choices: []choice{{Delta: delta{Content: &text}}}}) {
			return
		}
	}
	for i, c := range calls {
		// The first piece names the call; the arguments follow in pieces.
		first := deltaToolCall{Index: i, ID: c.ID, Type: "function"}
		first.Function.Name = c.Name
		if !send(chunk{Choices: []choice{{Delta: delta{ToolCalls: []deltaToolCall{first}}}}}) {
			return
		}
		for args := c.Arguments; args != ""; {
			n := min(16, len(args))
			for n < len(args) && args[n]&0xC0 == 0x80 { // keep runes whole
				n++
			}
			piece := deltaToolCall{Index: i}
			piece.Function.Arguments = args[:n]
			if !send(chunk{Choices: []choice{{Delta: delta{ToolCalls: []deltaToolCall{piece}}}}}) {
				return
			}
			args = args[n:]
		}
	}
	stop := "stop"
	if len(calls) > 0 {
		stop = "tool_calls"
	}
	if !send(chunk{Choices: []choice{{Delta: delta{}, FinishReason: &stop}}}) {
		return
	}
	if rec.IncludeUsage {
		prompt, completionTokens := 0, len(cfg.chunks)
		for _, m := range rec.Messages {
			prompt += (len(m.Content) + 3) / 4
		}
		if cfg.usage != nil {
			prompt, completionTokens = cfg.usage[0], cfg.usage[1]
		}
		u, _ := json.Marshal(usage{PromptTokens: prompt, CompletionTokens: completionTokens, TotalTokens: prompt + completionTokens})
		if !send(chunk{Choices: []choice{}, Usage: u}) {
			return
		}
	}
	s.write(w, rc, ctx, "data: [DONE]\n\n")
}

// wait blocks before a content chunk for the interval and, when held, for a
// released token. It reports false, counting a cancellation, when the client
// went away meanwhile.
func (s *Server) wait(ctx context.Context, cfg config) bool {
	if cfg.interval > 0 {
		t := time.NewTimer(cfg.interval)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			s.countCanceled()
			return false
		case <-s.stop:
			return false
		}
	}
	if cfg.hold {
		select {
		case <-s.gate:
		case <-ctx.Done():
			s.countCanceled()
			return false
		case <-s.stop:
			return false
		}
	}
	return true
}

// write sends one SSE frame and flushes it, reporting false (and counting a
// cancellation) when the client is gone.
func (s *Server) write(w http.ResponseWriter, rc *http.ResponseController, ctx context.Context, frame string) bool {
	if ctx.Err() != nil {
		s.countCanceled()
		return false
	}
	if _, err := w.Write([]byte(frame)); err != nil {
		s.countCanceled()
		return false
	}
	if err := rc.Flush(); err != nil {
		s.countCanceled()
		return false
	}
	return true
}

func (s *Server) countCanceled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.canceled++
}

// writeError sends an OpenAI-style error response.
func writeError(w http.ResponseWriter, status int, code, message, retryAfter string) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": message,
		"type":    errorType(status),
		"param":   nil,
		"code":    code,
	}})
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "requests"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// contentText flattens a message's content, a string or an array of parts.
func contentText(raw json.RawMessage) string {
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return text
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

// contentImages returns the image_url parts of a message's content.
func contentImages(raw json.RawMessage) []Image {
	var parts []struct {
		Type     string `json:"type"`
		ImageURL struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil
	}
	var out []Image
	for _, p := range parts {
		if p.Type != "image_url" {
			continue
		}
		img := Image{URL: p.ImageURL.URL}
		if rest, ok := strings.CutPrefix(img.URL, "data:"); ok {
			if mediaType, data, ok := strings.Cut(rest, ";base64,"); ok {
				if b, err := base64.StdEncoding.DecodeString(data); err == nil {
					img = Image{MediaType: mediaType, Data: b}
				}
			}
		}
		out = append(out, img)
	}
	return out
}

// The wire types of a streamed chunk.
type (
	chunk struct {
		ID      string          `json:"id"`
		Object  string          `json:"object"`
		Created int64           `json:"created"`
		Model   string          `json:"model"`
		Choices []choice        `json:"choices"`
		Usage   json.RawMessage `json:"usage,omitempty"`
	}
	choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		Logprobs     *string `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	}
	delta struct {
		Role      string          `json:"role,omitempty"`
		Content   *string         `json:"content,omitempty"`
		ToolCalls []deltaToolCall `json:"tool_calls,omitempty"`
	}
	deltaToolCall struct {
		Index    int    `json:"index"`
		ID       string `json:"id,omitempty"`
		Type     string `json:"type,omitempty"`
		Function struct {
			Name      string `json:"name,omitempty"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
)

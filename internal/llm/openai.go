package llm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
)

// DefaultIdleTimeout is how long OpenAI waits for the provider's next sign of
// life when OpenAIConfig.IdleTimeout is zero. Reasoning models can think for
// a while before their first token, so this errs on the long side.
const DefaultIdleTimeout = 60 * time.Second

// DefaultBaseURL is OpenAI's own API, used when OpenAIConfig.BaseURL is empty.
const DefaultBaseURL = "https://api.openai.com/v1"

// maxRetryDelay caps the SDK's wait between retries. A 429 asking for a
// longer wait is returned at once instead, as ResourceExhausted with its
// RetryAfter, rather than holding the user's request open.
const maxRetryDelay = 2 * time.Second

// OpenAIConfig configures an OpenAI provider.
type OpenAIConfig struct {
	// BaseURL is the API root including its version, e.g.
	// "http://localhost:11434/v1" for Ollama; empty means DefaultBaseURL.
	BaseURL string
	// APIKey is sent as a bearer token; empty sends none, which local
	// servers such as Ollama and vLLM accept.
	APIKey string
	// IdleTimeout bounds each wait for the provider: for the response
	// headers (including any retries) and, while Recv waits, for the next
	// chunk. Zero means DefaultIdleTimeout. A long answer that keeps
	// streaming is never cut off, which a total timeout would do.
	IdleTimeout time.Duration
	// HTTPClient carries the requests; nil means a client on a transport
	// configured as http.DefaultTransport, with smaller connection buffers
	// (see upstreamTransport). Its Timeout must be zero, since it would cut
	// long answers off; IdleTimeout is what detects a stalled provider.
	HTTPClient *http.Client
	// Clock runs the idle timer; nil is the system clock (tests pass a
	// fake one to tell a slow reader from a stalled provider exactly).
	Clock clock.Clock
	// MaxRetries is how many times a request failing before its first byte
	// (connection error, 408, 409, 429, 5xx) is retried. Zero, the default,
	// never retries, so an outage costs the user one round trip, not
	// several; set 1 to ride out a provider's occasional 502. A started
	// answer is never retried, since the user already saw part of it.
	MaxRetries int
}

// OpenAI is a chat.Provider for any OpenAI-compatible Chat Completions API:
// OpenAI, Ollama, vLLM, OpenRouter, Groq. It is safe for concurrent use.
type OpenAI struct {
	completions openai.ChatCompletionService
	idleTimeout time.Duration
	clock       clock.Clock
	// configErr reports a BaseURL that cannot work, on every Stream call,
	// because NewOpenAI has no error result to return it from.
	configErr error
}

// NewOpenAI returns a provider that streams with stream_options.include_usage
// so every answer ends with the provider's token count.
func NewOpenAI(cfg OpenAIConfig) *OpenAI {
	p := &OpenAI{idleTimeout: cfg.IdleTimeout, clock: cfg.Clock}
	if p.clock == nil {
		p.clock = clock.Real()
	}
	if p.idleTimeout <= 0 {
		p.idleTimeout = DefaultIdleTimeout
	}
	baseURL := cfg.BaseURL
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	if u, err := url.Parse(baseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.configErr = fmt.Errorf("model provider base URL %q is not an http(s) URL", baseURL)
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Transport: upstreamTransport()}
	}
	// The service is built directly rather than through openai.NewClient,
	// which reads OPENAI_API_KEY, OPENAI_BASE_URL and friends from the
	// environment: configuration belongs to internal/config alone, and an
	// ambient OpenAI key must never be sent to another provider's host.
	p.completions = openai.NewChatCompletionService(append([]option.RequestOption{
		option.WithBaseURL(baseURL),
		option.WithAPIKey(cfg.APIKey),
		option.WithHTTPClient(httpClient),
		option.WithMaxRetries(max(cfg.MaxRetries, 0)),
		option.WithMaxRetryDelay(maxRetryDelay),
		option.WithMiddleware(releaseBody),
	}, withoutPlatformHeaders...)...)
	return p
}

// withoutPlatformHeaders drops the headers in which openai-go tells the
// provider the host's OS, architecture and Go version on every request.
// The provider needs none of them, a third-party endpoint should not learn
// them, and net/http keeps each streaming request, headers and all, for
// the answer's life: with them the request's header map holds 11 entries,
// past the 8 a small map holds, and costs about 1 KiB more per running
// answer. They are deleted before openai-go clones the request for an
// attempt, so the clone is made small. The retry count, which a provider
// may use, stays.
var withoutPlatformHeaders = func() []option.RequestOption {
	names := [...]string{
		"X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS",
		"X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version",
	}
	opts := make([]option.RequestOption, len(names))
	for i, name := range names {
		opts[i] = option.WithHeaderDel(name)
	}
	return opts
}()

// releaseBody lets a request's body go once the provider has answered.
// net/http keeps each attempt's request until the response body is done
// with, for an answer as long as the answer streams, and the request
// holds its body (the whole prompt, the conversation so far: tens of KB
// for a long one) through Body and through GetBody, the copy a retry on a
// dead connection or a redirect reads. Neither is used once the response
// has begun: the body drops its reader when it has been read to its end
// or closed, a body GetBody hands out does the same, and GetBody is
// emptied when next returns. (openai-go's own retries start again from
// its copy of the request, not from this one.)
func releaseBody(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return next(req)
	}
	b := newReleasableBody(req.Body)
	req.Body = b
	var again *rebody
	if req.GetBody != nil {
		getBody := req.GetBody
		again = &rebody{}
		again.getBody.Store(&getBody)
		req.GetBody = again.get
	}
	res, err := next(req)
	if again != nil {
		again.getBody.Store(nil)
	}
	return res, err
}

// releasableBody is a request body that lets its reader go at its end.
// Read and Close may run at once, as net/http allows a transport to close
// a body from another goroutine: neither waits for the other.
type releasableBody struct {
	rc atomic.Pointer[io.ReadCloser] // nil once read to its end or closed
}

func newReleasableBody(rc io.ReadCloser) *releasableBody {
	b := &releasableBody{}
	b.rc.Store(&rc)
	return b
}

// errBodyReleased is what reading a released body, or asking for another
// copy of it, returns.
var errBodyReleased = errors.New("the request body was released")

func (b *releasableBody) Read(p []byte) (int, error) {
	rc := b.rc.Load()
	if rc == nil {
		return 0, errBodyReleased
	}
	n, err := (*rc).Read(p)
	if errors.Is(err, io.EOF) && b.rc.CompareAndSwap(rc, nil) {
		_ = (*rc).Close()
	}
	return n, err
}

func (b *releasableBody) Close() error {
	if rc := b.rc.Swap(nil); rc != nil {
		return (*rc).Close()
	}
	return nil
}

// rebody is a request's GetBody until the response has begun.
type rebody struct {
	getBody atomic.Pointer[func() (io.ReadCloser, error)]
}

func (r *rebody) get() (io.ReadCloser, error) {
	getBody := r.getBody.Load()
	if getBody == nil {
		return nil, errBodyReleased
	}
	rc, err := (*getBody)()
	if err != nil {
		return nil, err
	}
	return newReleasableBody(rc), nil
}

// upstreamBufferSize is the read and write buffer of each connection to
// the provider. An HTTP/1.1 connection carries one streamed answer at a
// time and stays open for all of it, so its buffers (4 KiB each by
// default) are memory every open answer holds. A request is written in
// one or two writes either way (the body goes straight to the socket once
// the buffer is full), and the answer's events are a few hundred bytes,
// so 1 KiB costs at most a few more reads per answer when many events
// arrive at once. It applies to HTTP/1.1 upstreams (local or self-hosted
// models over http://); an https provider that speaks HTTP/2, as
// api.openai.com does, multiplexes answers on one connection whose
// buffers net/http sizes itself.
const upstreamBufferSize = 1 << 10

// upstreamTransport is http.DefaultTransport's configuration (proxy from
// the environment, HTTP/2 for https, its timeouts and pool) with the
// smaller buffers.
func upstreamTransport() http.RoundTripper {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t = t.Clone()
	t.ReadBufferSize, t.WriteBufferSize = upstreamBufferSize, upstreamBufferSize
	return t
}

// Stream implements chat.Provider.
func (p *OpenAI) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	if p.configErr != nil {
		return nil, apperr.Wrap(p.configErr, apperr.Internal, "the model provider is misconfigured")
	}
	params, err := chatParams(req)
	if err != nil {
		return nil, err
	}

	// The request runs on its own context so that the idle timer and Close
	// can cancel it with a cause interpretError can tell apart from the
	// caller's cancellation.
	reqCtx, cancel := context.WithCancelCause(ctx)
	idle := p.clock.AfterFunc(p.idleTimeout, func() { cancel(errIdle) })
	// NewStreaming's request (stream: true), with the response handed back
	// unread: openai-go's SSE framing (in sse.go's copy) splits it into
	// events, and decodeEvent reads each chunk (chunk.go).
	var raw *http.Response
	_, err = p.completions.New(reqCtx, params, option.WithJSONSet("stream", true), option.WithResponseBodyInto(&raw))
	idle.Stop()
	var dec ssestream.Decoder
	if err == nil {
		if dec = newSSEDecoder(raw); dec == nil {
			err = errTruncated
		}
	}
	if err != nil {
		cancel(err)
		if raw != nil && raw.Body != nil {
			_ = raw.Body.Close()
		}
		return nil, interpretError(err, ctx, reqCtx, false)
	}
	return &openAIStream{
		callerCtx:   ctx,
		reqCtx:      reqCtx,
		cancel:      cancel,
		idle:        idle,
		idleTimeout: p.idleTimeout,
		sse:         dec,
		usage:       chat.Usage{PromptTokens: promptEstimate(req.Messages)},
	}, nil
}

// toolParams caches each tool spec in the request's form, encoded once:
// the same few tools go with every request, and encoding their JSON
// Schemas through the SDK's reflective encoder on every request cost about
// 40 µs and 110 allocations (for the two artifact tools), in the goroutine
// that sends the upstream request, on the path to the first token. The
// SDK sends the cached JSON as it is (param.Override).
var toolParams sync.Map // string (name, description, schema) → openai.ChatCompletionToolUnionParam

// toolParam returns the request form of t.
func toolParam(t chat.ToolSpec) (openai.ChatCompletionToolUnionParam, error) {
	key := t.Name + "\x00" + t.Description + "\x00" + string(t.Parameters)
	if p, ok := toolParams.Load(key); ok {
		return p.(openai.ChatCompletionToolUnionParam), nil
	}
	p, err := toolParamSDK(t)
	if err != nil {
		return openai.ChatCompletionToolUnionParam{}, err
	}
	encoded, err := json.Marshal(p)
	if err != nil {
		return openai.ChatCompletionToolUnionParam{}, apperr.Wrap(err, apperr.Internal, "tool %q cannot be encoded", t.Name)
	}
	p = param.Override[openai.ChatCompletionToolUnionParam](json.RawMessage(encoded))
	toolParams.Store(key, p)
	return p, nil
}

// toolParamSDK is t in the SDK's types, which its encoder walks.
func toolParamSDK(t chat.ToolSpec) (openai.ChatCompletionToolUnionParam, error) {
	var schema shared.FunctionParameters
	if len(t.Parameters) > 0 {
		if err := json.Unmarshal(t.Parameters, &schema); err != nil {
			return openai.ChatCompletionToolUnionParam{}, apperr.Wrap(err, apperr.Internal, "tool %q has an invalid parameter schema", t.Name)
		}
	}
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name: t.Name, Description: openai.String(t.Description), Parameters: schema,
	}), nil
}

// chatParams validates req and converts it to the SDK's request body.
func chatParams(req chat.ModelRequest) (openai.ChatCompletionNewParams, error) {
	// These are bugs in the caller rather than user input, hence Internal,
	// except an empty conversation, which a client could send.
	if req.Model == "" {
		return openai.ChatCompletionNewParams{}, apperr.New(apperr.Internal, "no model was chosen for the request")
	}
	if len(req.Messages) == 0 {
		return openai.ChatCompletionNewParams{}, apperr.InvalidField("messages", "must not be empty")
	}
	msgs := make([]openai.ChatCompletionMessageParamUnion, 0, len(req.Messages))
	for i, m := range req.Messages {
		switch m.Role {
		case chat.RoleSystem:
			msgs = append(msgs, openai.SystemMessage(m.Content))
		case chat.RoleUser:
			if len(m.Images) == 0 {
				msgs = append(msgs, openai.UserMessage(m.Content))
				continue
			}
			msgs = append(msgs, openai.UserMessage(userParts(m)))
		case chat.RoleAssistant:
			if len(m.ToolCalls) == 0 {
				msgs = append(msgs, openai.AssistantMessage(m.Content))
				continue
			}
			turn := openai.ChatCompletionAssistantMessageParam{}
			if m.Content != "" {
				turn.Content.OfString = openai.String(m.Content)
			}
			for _, c := range m.ToolCalls {
				turn.ToolCalls = append(turn.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
						ID:       c.ID,
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.Name, Arguments: c.Arguments},
					},
				})
			}
			msgs = append(msgs, openai.ChatCompletionMessageParamUnion{OfAssistant: &turn})
		case chat.RoleTool:
			msgs = append(msgs, openai.ToolMessage(m.Content, m.ToolCallID))
		default:
			return openai.ChatCompletionNewParams{}, apperr.New(apperr.Internal, "message %d has unknown role %q", i, m.Role)
		}
	}
	params := openai.ChatCompletionNewParams{
		Model:    req.Model,
		Messages: msgs,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{
			IncludeUsage: openai.Bool(true),
		},
	}
	for _, t := range req.Tools {
		tool, err := toolParam(t)
		if err != nil {
			return openai.ChatCompletionNewParams{}, err
		}
		params.Tools = append(params.Tools, tool)
	}
	if req.MaxTokens > 0 {
		// max_completion_tokens, not the deprecated max_tokens: OpenAI's
		// reasoning models reject max_tokens with a 400, while servers
		// that predate the new name ignore it and merely answer at length.
		params.MaxCompletionTokens = openai.Int(int64(req.MaxTokens))
	}
	if req.Temperature != nil {
		params.Temperature = openai.Float(*req.Temperature)
	}
	return params, nil
}

// userParts is a user turn with images as content parts: the text, then
// each image as an image_url part holding a data: URL, since the image
// lives in Parley's storage and the provider must not fetch it.
func userParts(m chat.PromptMessage) []openai.ChatCompletionContentPartUnionParam {
	parts := make([]openai.ChatCompletionContentPartUnionParam, 0, len(m.Images)+1)
	if m.Content != "" {
		parts = append(parts, openai.TextContentPart(m.Content))
	}
	for _, img := range m.Images {
		url := "data:" + img.ContentType + ";base64," + base64.StdEncoding.EncodeToString(img.Data)
		parts = append(parts, openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url}))
	}
	return parts
}

// promptEstimate is the prompt's size by EstimateTokens, the fallback for
// providers that do not report usage.
func promptEstimate(msgs []chat.PromptMessage) int64 {
	var n int64
	for _, m := range msgs {
		n += int64(chat.EstimateTokens(m.Content))
	}
	return n
}

// openAIStream adapts the SDK's SSE stream to Stream.
type openAIStream struct {
	callerCtx   context.Context
	reqCtx      context.Context
	cancel      context.CancelCauseFunc
	idle        clock.Timer
	idleTimeout time.Duration

	// recvMu is held by Recv so Close knows whether it may close the SSE
	// stream itself or must leave that to the Recv in progress.
	recvMu sync.Mutex
	closed atomic.Bool
	sse    ssestream.Decoder

	pending      []chat.Delta // deltas of the last chunk not handed out yet
	usage        chat.Usage
	usageFinal   bool
	received     int // runes of answer text so far, for the usage estimate
	finishReason string
	err          error // sticky: io.EOF or an *apperr.Error
}

// Recv implements chat.ModelStream.
func (s *openAIStream) Recv() (chat.Delta, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if len(s.pending) > 0 {
		d := s.pending[0]
		s.pending = s.pending[1:]
		return d, nil
	}
	if s.err != nil {
		return chat.Delta{}, s.err
	}
	if s.closed.Load() {
		// Close may have found a Recv in progress and left the body to us.
		_ = s.sse.Close()
		s.err = interpretError(errClosed, s.callerCtx, s.reqCtx, true)
		return chat.Delta{}, s.err
	}
	// The timer runs only while we wait on the provider, so a caller slow
	// to call Recv (a slow client downstream) is not mistaken for a
	// stalled provider.
	s.idle.Reset(s.idleTimeout)
	defer s.idle.Stop()
	// This loop is where an answer's goroutine waits on the provider, so
	// what it does per chunk is in calls: with a small frame here the
	// waiting goroutine's stack fits in a quarter of 16 KiB, and the
	// collector halves it (see streamTurn in package chat).
	for s.sse.Next() {
		s.idle.Reset(s.idleTimeout)
		d, ok, stop, err := s.chunk(s.sse.Event())
		if ok {
			return d, nil
		}
		if stop {
			return s.end(err)
		}
	}
	return s.end(nil)
}

// chunk takes one event of the stream: it returns the first delta it
// carries (ok), or stop at [DONE] or with the error that ends the stream,
// or neither for a chunk with nothing to hand out.
func (s *openAIStream) chunk(ev ssestream.Event) (d chat.Delta, ok, stop bool, err error) {
	f, done, err := decodeEvent(ev)
	if done || err != nil {
		return chat.Delta{}, false, true, err
	}
	if f.usage != nil {
		s.usage = *f.usage
		s.usageFinal = true
	}
	text := f.text
	var calls []chat.Delta // rare: only chunks of tool calls
	for i := range f.calls {
		s.received += utf8.RuneCountInString(f.calls[i].Arguments)
		calls = append(calls, chat.Delta{ToolCall: &f.calls[i]})
	}
	if f.finishReason != "" {
		s.finishReason = f.finishReason
	}
	s.received += utf8.RuneCountInString(text)
	if !s.usageFinal {
		s.usage.CompletionTokens = int64((s.received + 3) / 4)
	}
	switch {
	case len(calls) == 0 && text != "":
		// The common chunk: text alone, handed out without a slice.
		return chat.Delta{Text: text}, true, false, nil
	case len(calls) > 0 && text != "":
		s.pending = calls
		return chat.Delta{Text: text}, true, false, nil
	case len(calls) > 0:
		s.pending = calls[1:]
		return calls[0], true, false, nil
	}
	return chat.Delta{}, false, false, nil
}

// end ends the stream after its last event: err is nil after [DONE] or
// when the body ended, or the chunk's error that cut it.
func (s *openAIStream) end(err error) (chat.Delta, error) {
	if err == nil {
		err = s.sse.Err()
	}
	// The body is done with (openai-go's stream closes it at its end too).
	_ = s.sse.Close()
	switch {
	case err == nil && s.finishReason == "":
		// A body that ends without a finish reason is a truncated
		// answer, e.g. a proxy that closed the connection cleanly. (If
		// Close caused it, interpretError sees that and says Canceled.)
		s.err = interpretError(errTruncated, s.callerCtx, s.reqCtx, true)
	case err == nil:
		s.err = io.EOF
	default:
		s.err = interpretError(err, s.callerCtx, s.reqCtx, true)
	}
	// Release the request's context now that the body is done with.
	s.cancel(errClosed)
	return chat.Delta{}, s.err
}

// Usage implements chat.ModelStream.
func (s *openAIStream) Usage() chat.Usage { return s.usage }

// FinishReason implements chat.ModelStream.
func (s *openAIStream) FinishReason() string { return s.finishReason }

// Close implements chat.ModelStream.
func (s *openAIStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.idle.Stop()
	// Canceling the request context tears the connection down (HTTP/1)
	// or resets the stream (HTTP/2), which is what tells the provider to
	// stop generating; it also wakes a Recv blocked on the body.
	s.cancel(errClosed)
	if s.recvMu.TryLock() {
		// No Recv in progress: close the body here. Otherwise the Recv
		// returns on the canceled context and the SDK closes it.
		_ = s.sse.Close()
		s.recvMu.Unlock()
	}
	return nil
}

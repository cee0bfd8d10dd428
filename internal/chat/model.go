package chat

import (
	"context"
	"slices"

	"github.com/parleyhq/parley/internal/apperr"
)

// Provider starts completions; internal/llm implements it for
// OpenAI-compatible APIs and for the offline dev responder.
type Provider interface {
	// Stream starts a completion and returns once the provider accepted the
	// request. Canceling ctx cancels the upstream request at any point,
	// including while a ModelStream's Recv waits.
	//
	// Errors are *apperr.Error: Invalid for a request the model cannot take
	// (such as a conversation over its context length), ResourceExhausted
	// when the provider rate limits (RetryAfter set), Unavailable when it is
	// down or unreachable, DeadlineExceeded when it stops responding,
	// Canceled when ctx ends, and Internal for misconfiguration such as
	// rejected credentials.
	Stream(ctx context.Context, req ModelRequest) (ModelStream, error)
}

// ModelStream yields an answer piece by piece.
//
// Recv, Usage and FinishReason are not safe for concurrent use. Close may be
// called from any goroutine, also while Recv waits, to abort the answer.
type ModelStream interface {
	// Recv returns the next delta: text, or a piece of a tool call. At the
	// end of the turn it returns io.EOF, after which Usage and
	// FinishReason ("tool_calls" when the model called tools) are final.
	// Any other error is an *apperr.Error and is returned again by later
	// calls.
	Recv() (Delta, error)
	// Usage is the provider's token count once Recv returned io.EOF. Before
	// that, or when the provider reported none, it is an estimate by
	// EstimateTokens of the prompt and of the text received so far, which is
	// what budgets need when an answer is stopped early.
	Usage() Usage
	// FinishReason says why the model stopped, e.g. "stop" or "length"; it is
	// empty until the provider said so.
	FinishReason() string
	// Close releases the upstream request. Closing before io.EOF cancels it,
	// so the provider stops generating (and billing). Close is idempotent;
	// Recv after Close returns apperr Canceled.
	Close() error
}

// Delta is one piece of a model's turn: text, or a piece of a tool call.
type Delta struct {
	Text string
	// ToolCall is a piece of a tool call (nil for text).
	ToolCall *ToolCallDelta
}

// ToolCallDelta is a piece of a tool call as the model streams it: Index
// tells the calls of one turn apart, ID and Name come with a call's first
// piece, Arguments is the next fragment of its JSON arguments.
type ToolCallDelta struct {
	Index     int
	ID, Name  string
	Arguments string
}

// ModelRequest asks a model to continue a conversation.
type ModelRequest struct {
	// Model is the provider's model name, e.g. "gpt-4o-mini".
	Model string
	// Messages is the conversation so far, oldest first.
	Messages []PromptMessage
	// MaxTokens caps the answer's length; 0 leaves it to the provider.
	MaxTokens int
	// Tools the model may call in this turn; none when empty.
	Tools []ToolSpec
	// Temperature is the sampling temperature; nil leaves it to the
	// provider (1 for OpenAI). 0 asks for the most likely answer, which
	// the response cache relies on.
	Temperature *float64
}

// PromptMessage is one turn of a conversation as the model sees it.
type PromptMessage struct {
	Role    Role
	Content string
	// ToolCalls are the calls an assistant turn made.
	ToolCalls []ToolCall
	// ToolCallID names the call a RoleTool message answers.
	ToolCallID string
	// Images are the images attached to a user turn, for vision models;
	// Content already holds the turn's text files.
	Images []PromptImage
}

// PromptImage is an image a user turn shows the model.
type PromptImage struct {
	ContentType string // image/png, image/jpeg, image/webp or image/gif
	Data        []byte
}

// Models is the catalog of models the server offers and the provider that
// serves each.
type Models struct {
	defaultModel string
	providers    map[string]Provider
	names        []string
}

// NewModels returns a catalog whose default is the first model added.
func NewModels() *Models { return &Models{providers: map[string]Provider{}} }

// Add offers names through p.
func (m *Models) Add(p Provider, names ...string) *Models {
	for _, n := range names {
		if m.defaultModel == "" {
			m.defaultModel = n
		}
		if _, ok := m.providers[n]; !ok {
			m.names = append(m.names, n)
		}
		m.providers[n] = p
	}
	return m
}

// Names lists the offered models, the default first.
func (m *Models) Names() []string { return slices.Clone(m.names) }

// Has reports whether name is offered.
func (m *Models) Has(name string) bool { _, ok := m.providers[name]; return ok }

// resolve picks the first non-empty of the names, or the default, and its
// provider. It returns apperr Invalid naming field for an unknown model.
func (m *Models) resolve(field string, names ...string) (string, Provider, error) {
	name := m.defaultModel
	for _, n := range names {
		if n != "" {
			name = n
			break
		}
	}
	p, ok := m.providers[name]
	if !ok {
		return "", nil, apperr.InvalidField(field, "%q is not a model this server offers (offered: %v)", name, m.names)
	}
	return name, p, nil
}

// Resolve picks the first non-empty of names, or the default model, and
// the provider that serves it; an unknown name answers apperr Invalid
// naming field. Other domains that call models (agents) resolve them
// here.
func (m *Models) Resolve(field string, names ...string) (string, Provider, error) {
	return m.resolve(field, names...)
}

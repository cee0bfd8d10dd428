// Package llm talks to language models. It declares the Provider a chat turn
// streams its answer from, and two implementations: OpenAI, for any
// OpenAI-compatible Chat Completions API, and Offline, a deterministic
// responder for development without keys or network.
//
// Every error a Provider or Stream returns is an *apperr.Error, so the RPC
// layer maps it without knowing which provider produced it.
package llm

import (
	"context"
)

// Role says who wrote a message.
type Role string

// The roles a conversation is made of.
const (
	RoleSystem    Role = "system"    // instructions from the server or the user's system prompt
	RoleUser      Role = "user"      // what the person typed
	RoleAssistant Role = "assistant" // what the model answered earlier
)

// Message is one turn of a conversation as the model sees it.
type Message struct {
	Role    Role
	Content string
}

// Request asks a model to continue a conversation.
type Request struct {
	// Model is the provider's model name, e.g. "gpt-4o-mini" or OfflineModel.
	Model string
	// Messages is the conversation so far, oldest first.
	Messages []Message
	// MaxTokens caps the answer's length; 0 leaves it to the provider.
	MaxTokens int
}

// Usage counts the tokens a completion consumed.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
}

// Stream yields an answer piece by piece.
//
// Recv, Usage and FinishReason are not safe for concurrent use. Close may be
// called from any goroutine, also while Recv waits, to abort the answer.
type Stream interface {
	// Recv returns the next text delta. At the end of the answer it returns
	// io.EOF, after which Usage and FinishReason are final. Any other error is
	// an *apperr.Error and is returned again by later calls.
	Recv() (string, error)
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

// Provider starts completions.
type Provider interface {
	// Stream starts a completion and returns once the provider accepted the
	// request. Canceling ctx cancels the upstream request at any point,
	// including while a Stream's Recv waits.
	//
	// Errors are *apperr.Error: Invalid for a request the model cannot take
	// (such as a conversation over its context length), ResourceExhausted
	// when the provider rate limits (RetryAfter set), Unavailable when it is
	// down or unreachable, DeadlineExceeded when it stops responding,
	// Canceled when ctx ends, and Internal for misconfiguration such as
	// rejected credentials.
	Stream(ctx context.Context, req Request) (Stream, error)
}

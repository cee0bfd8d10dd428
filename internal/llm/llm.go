// Package llm talks to language models. It implements the chat domain's
// Provider and ModelStream for two kinds of model: OpenAI, for any
// OpenAI-compatible Chat Completions API, and Offline, a deterministic
// responder for development without keys or network.
//
// Every error a provider or stream returns is an *apperr.Error, so the RPC
// layer maps it without knowing which provider produced it.
package llm

import "github.com/parleyhq/parley/internal/chat"

// The providers of this package are the chat domain's.
var (
	_ chat.Provider = (*OpenAI)(nil)
	_ chat.Provider = (*Offline)(nil)
)

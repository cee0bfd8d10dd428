package llm

import (
	"testing"

	"github.com/openai/openai-go/v3/packages/ssestream"
)

// BenchmarkDecodeEvent decodes a text delta as OpenAI streams it.
func BenchmarkDecodeEvent(b *testing.B) {
	ev := ssestream.Event{Data: []byte(`{"id":"chatcmpl-CX1yZ2aB3cD4eF5gH6iJ7kL8mN9o","object":"chat.completion.chunk","created":1764806400,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":" hello"},"logprobs":null,"finish_reason":null}],"obfuscation":"Zk3vS"}`)}
	b.ReportAllocs()
	for b.Loop() {
		f, _, err := decodeEvent(ev)
		if err != nil || f.text != " hello" {
			b.Fatal(f, err)
		}
	}
}

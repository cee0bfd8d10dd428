package llm

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"

	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/chat"
)

// toolSpecsForTest are the tools answers are offered, and odd ones: no
// schema, characters JSON escapes, a nested schema.
func toolSpecsForTest() []chat.ToolSpec {
	return append((&artifact.Tools{}).Specs(),
		chat.ToolSpec{Name: "no_schema", Description: "takes nothing"},
		chat.ToolSpec{Name: "odd", Description: "a <b> & \"quoted\" é \u2028 description",
			Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string","description":"<x> & y","enum":["a","b"]},"n":{"type":"array","items":{"type":"object","properties":{"k":{"type":"integer","minimum":0}}}}},"required":["q"],"additionalProperties":false}`)},
	)
}

// requestBody is the JSON body chatParams makes for req, decoded.
func requestBody(t *testing.T, params openai.ChatCompletionNewParams) any {
	t.Helper()
	b, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, b)
	}
	return v
}

// TestToolParamCached: a request with the tools encoded once is the request
// the SDK encodes from its own types, every time.
func TestToolParamCached(t *testing.T) {
	specs := toolSpecsForTest()
	req := chat.ModelRequest{Model: "m", Messages: []chat.PromptMessage{{Role: chat.RoleUser, Content: "hi"}}, Tools: specs}
	want, err := chatParams(chat.ModelRequest{Model: req.Model, Messages: req.Messages})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		p, err := toolParamSDK(s)
		if err != nil {
			t.Fatal(err)
		}
		want.Tools = append(want.Tools, p)
	}
	wantBody := requestBody(t, want)
	for i := range 3 { // the first call encodes, the others reuse
		got, err := chatParams(req)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantBody, requestBody(t, got)); diff != "" {
			t.Errorf("call %d: request body (-SDK-encoded +cached):\n%s", i, diff)
		}
	}
}

func TestToolParamInvalidSchema(t *testing.T) {
	if _, err := toolParam(chat.ToolSpec{Name: "bad", Parameters: json.RawMessage(`{`)}); err == nil {
		t.Fatal("an invalid schema was accepted")
	}
}

// BenchmarkChatParams is building and encoding one request's body with
// the artifact tools, as every answer's upstream request does.
func BenchmarkChatParams(b *testing.B) {
	req := chat.ModelRequest{Model: "m", Messages: []chat.PromptMessage{{Role: chat.RoleUser, Content: "Tell me something."}}, Tools: (&artifact.Tools{}).Specs()}
	b.ReportAllocs()
	for b.Loop() {
		p, err := chatParams(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

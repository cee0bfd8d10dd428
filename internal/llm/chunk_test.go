package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/tidwall/gjson"
)

// recordedChunks are chunks as OpenAI and OpenAI-compatible servers send
// them (text, tool calls, usage, nulls, escapes), and odd ones that must
// go the SDK's way.
var recordedChunks = []string{
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello, w\u00f6rld \ud83d\ude00 \"quoted\"\n"},"finish_reason":null}]}`,
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0}}}`,
	`{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"create_artifact","arguments":""}}]}}]}`,
	`{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"title\": \"A"}}]}}]}`,
	`{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"search","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
	`{"choices":[{"index":1,"delta":{"content":"second choice"}},{"index":0,"delta":{"content":"first"}}]}`,
	`{"choices":[{"delta":{"content":null,"tool_calls":null},"finish_reason":null}]}`,
	`{"id":"chatcmpl-CX1","object":"chat.completion.chunk","created":1764806400,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_5","choices":[{"index":0,"delta":{"content":" hello"},"logprobs":null,"finish_reason":null}],"obfuscation":"Zk3vS"}`,
	`{"choices":[{"index":0,"delta":{"content":"line\none \"two\"\t\\ / \/"},"logprobs":{"content":[{"token":"x","logprob":-0.5e-3,"bytes":[120],"top_logprobs":[]}]}}]}`,
	// Shapes the fast path leaves to the SDK.
	`{"choices":[{"index":0.0,"delta":{"content":"float index"}}]}`,
	`{"choices":[{"index":"0","delta":{"content":"string index"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":42}}]}`,
	`{"choices":{"index":0}}`,
	`{"usage":{"prompt_tokens":1e2,"completion_tokens":3}}`,
	`{"usage":"none"}`,
	`[1,2,3]`,
	`{"choices":[{"index":0,"delta":{"content":"truncated`,
	`not json at all`,
}

// TestChunkDecodersAgree: every recorded chunk decodes the same way
// through decodeEvent as through openai-go's types.
func TestChunkDecodersAgree(t *testing.T) {
	t.Parallel()
	for i, c := range recordedChunks {
		checkAgree(t, fmt.Sprint(i), []byte(c))
	}
}

// FuzzChunkDecoders decodes fuzzed chunks both ways; `make test` runs the
// seeds (the recorded chunks and generated ones), `make fuzz` explores.
func FuzzChunkDecoders(f *testing.F) {
	for _, c := range recordedChunks {
		f.Add([]byte(c), "", "", "", int64(0), int64(0), false)
	}
	f.Add([]byte(nil), "text \u2028 \x00", "call_9", "{\"a\":[1,2]}", int64(3), int64(-1), true)
	f.Add([]byte(nil), "\xff\xfe invalid utf-8", "", "", int64(1<<40), int64(7), false)
	f.Fuzz(func(t *testing.T, raw []byte, text, id, args string, index, tokens int64, withUsage bool) {
		checkAgree(t, "raw", raw)
		// A well-formed chunk built from the fuzzed values.
		chunk := map[string]any{
			"id": "c", "object": "chat.completion.chunk",
			"choices": []any{map[string]any{
				"index": index % 3,
				"delta": map[string]any{
					"content":    text,
					"tool_calls": []any{map[string]any{"index": index, "id": id, "function": map[string]any{"name": text, "arguments": args}}},
				},
				"finish_reason": id,
			}},
		}
		if withUsage {
			chunk["usage"] = map[string]any{"prompt_tokens": tokens, "completion_tokens": index}
		}
		built, err := json.Marshal(chunk)
		if err != nil {
			t.Fatal(err)
		}
		checkAgree(t, "built", built)
	})
}

func checkAgree(t *testing.T, name string, data []byte) {
	t.Helper()
	data = append([]byte(nil), data...) // overwritten below
	want, wantErr := decodeChunkSDK(data)
	got, gotErr := decodeChunk(data)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("%s: %q: SDK error %v, ours %v", name, data, wantErr, gotErr)
	}
	if !deepEqualChunk(got, want) {
		t.Fatalf("%s: %q decodes differently:\n ours %+v\n SDK  %+v", name, data, got, want)
	}
	// The one-pass reader takes a chunk only if it reads it as the SDK
	// does, and then without an error.
	scanned, scannedOK := scanTextChunk(data)
	if scannedOK && (wantErr != nil || !deepEqualChunk(scanned, want)) {
		t.Fatalf("%s: %q: the one-pass reader takes it as\n %+v\n SDK %+v, %v", name, data, scanned, want, wantErr)
	}
	// The decoder reuses its buffer for the next event: nothing decoded
	// may still point into it.
	original := string(data)
	for i := range data {
		data[i] = 'X'
	}
	if !deepEqualChunk(got, want) {
		t.Fatalf("%s: %q: what was decoded changed with the buffer:\n ours %+v\n SDK  %+v", name, original, got, want)
	}
	if scannedOK && !deepEqualChunk(scanned, want) {
		t.Fatalf("%s: %q: what the one-pass reader decoded changed with the buffer:\n %+v\n SDK %+v", name, original, scanned, want)
	}
}

// TestScanTextChunk: text deltas, the chunks nearly every event is, take
// the one-pass reader (BenchmarkDecodeEvent: about a third of gjson's
// time); every other shape is left to the readers before it.
func TestScanTextChunk(t *testing.T) {
	t.Parallel()
	taken := []string{
		recordedChunks[0], recordedChunks[2],
		recordedChunks[9], recordedChunks[10],
		` {"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"wörld 😀"},"finish_reason":"length"}],"usage":null} `,
		`{"choices":null}`, `{}`,
	}
	left := []string{
		recordedChunks[1], // a \u escape in the content
		recordedChunks[3], // usage
		recordedChunks[4], // tool calls
		`{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[]}`,
		`{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}`,
		`{"ch\u006fices":[{"index":0,"delta":{"content":"escaped name"}}]}`,
		`{"choices":[{"index":01,"delta":{"content":"leading zero"}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"trailing comma"},}]}`,
		`{"choices":[{"index":0,"delta":{"content":"ok"}}]} trailing`,
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"raw \x01 control\"}}]}",
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"bad \xff utf-8\"}}]}",
		`{"choices":[{"index":0,"delta":{"content":"x"}}],"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
	}
	for _, c := range errorEvents {
		// Those openai-go reads as errors; the rest are chunks.
		if gjson.Get(c, "error").Exists() {
			left = append(left, c)
		} else {
			checkAgree(t, "not an error", []byte(c))
		}
	}
	for _, c := range taken {
		if _, ok := scanTextChunk([]byte(c)); !ok {
			t.Errorf("%s: not taken by the one-pass reader", c)
		}
		checkAgree(t, "taken", []byte(c))
	}
	for _, c := range left {
		if f, ok := scanTextChunk([]byte(c)); ok {
			t.Errorf("%s: taken by the one-pass reader (%+v), which should leave it", c, f)
		}
	}
}

func deepEqualChunk(a, b chunkFields) bool {
	if a.text != b.text || a.finishReason != b.finishReason || (a.usage == nil) != (b.usage == nil) || len(a.calls) != len(b.calls) {
		return false
	}
	if a.usage != nil && *a.usage != *b.usage {
		return false
	}
	for i := range a.calls {
		if a.calls[i] != b.calls[i] {
			return false
		}
	}
	return true
}

// errorEvents carry an "error" member, or look as if they might, in the
// places a one-pass read of the top level could get wrong.
var errorEvents = []string{
	`{"error":{"message":"The server had an error","type":"server_error"}}`,
	`{"error":"overloaded"}`,
	`{"error":null}`,
	`{"choices":[{"index":0,"delta":{"content":"hi"}}],"error":{"message":"late"}}`,
	`{"choices":[{"index":0,"delta":{"content":"hi","error":"nested, not an error"}}]}`,
	`{"err\u006fr":"escaped name"}`,
	`{"error":"first","error":"second"}`,
	`{"err\u006fr":"escaped first","error":"plain second"}`,
	`{"errors":"another name"}`,
	`{"error":"truncated`,
	`["error"]`,
}

// TestDecodeEventErrors: an event ends the stream with a StreamError
// exactly when openai-go's stream would (gjson.GetBytes(data, "error")
// exists), with the same message; other events decode as decodeChunk does.
func TestDecodeEventErrors(t *testing.T) {
	t.Parallel()
	for _, raw := range append(errorEvents, recordedChunks...) {
		data := []byte(raw)
		f, done, err := decodeEvent(ssestream.Event{Type: "", Data: data})
		if done {
			t.Errorf("%s: done", raw)
		}
		sdk := gjson.GetBytes(data, "error")
		var streamErr *ssestream.StreamError
		switch {
		case sdk.Exists():
			want := "received error while streaming: " + sdk.String()
			if !errors.As(err, &streamErr) || streamErr.Message != want || string(streamErr.Event.Data) != raw {
				t.Errorf("%s: %v, want a StreamError %q", raw, err, want)
			}
		case errors.As(err, &streamErr):
			t.Errorf("%s: StreamError %v, but openai-go's stream reads no error member", raw, err)
		default:
			want, wantErr := decodeChunk(data)
			if (err != nil) != (wantErr != nil) || !deepEqualChunk(f, want) {
				t.Errorf("%s: %+v, %v; decodeChunk %+v, %v", raw, f, err, want, wantErr)
			}
		}
	}
}

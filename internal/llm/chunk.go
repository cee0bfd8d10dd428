package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unsafe"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/tidwall/gjson"

	"github.com/parleyhq/parley/internal/chat"
)

// The streaming chunk decoder. openai-go builds the request, retries it and
// turns a refused one into an *openai.Error; its SSE framing splits the
// body into events. Decoding each event's JSON into openai-go's
// ChatCompletionChunk (its reflective apijson decoder) was a fifth of the
// CPU of a streamed answer and 64 allocations a chunk, for the handful of
// fields Parley reads. decodeChunk reads those fields with gjson, without
// building the SDK's types, when the chunk has exactly the shape the SDK's
// types describe; anything else (a field of another type, invalid JSON)
// goes through the SDK's decoder, so an odd chunk is handled exactly as it
// was. FuzzChunkDecoders checks that both ways agree.

// chunkFields is what Parley reads from one chunk.
type chunkFields struct {
	text         string
	calls        []chat.ToolCallDelta
	finishReason string
	usage        *chat.Usage // nil unless the chunk carries usage
}

// decodeEvent turns one SSE event into the chunk's fields. done reports
// the end of the stream ([DONE]); an "error" member ends it with the
// SDK's *ssestream.StreamError, as openai-go's stream does.
func decodeEvent(ev ssestream.Event) (f chunkFields, done bool, err error) {
	data := ev.Data
	if len(data) >= 6 && string(data[:6]) == "[DONE]" {
		return chunkFields{}, true, nil
	}
	if e := gjson.GetBytes(data, "error"); e.Exists() {
		return chunkFields{}, false, &ssestream.StreamError{
			Message: fmt.Sprintf("received error while streaming: %s", e.String()),
			// The decoder reuses Data for the next event.
			Event: ssestream.Event{Type: ev.Type, Data: bytes.Clone(ev.Data)},
		}
	}
	f, err = decodeChunk(data)
	return f, false, err
}

// decodeChunk reads a chunk the fast way when it can, else the SDK's way.
func decodeChunk(data []byte) (chunkFields, error) {
	if f, ok := decodeChunkFast(data); ok {
		return f, nil
	}
	return decodeChunkSDK(data)
}

// decodeChunkSDK decodes a chunk with openai-go's types.
func decodeChunkSDK(data []byte) (chunkFields, error) {
	var c openai.ChatCompletionChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return chunkFields{}, err
	}
	var f chunkFields
	if c.JSON.Usage.Valid() {
		f.usage = &chat.Usage{PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens}
	}
	for _, choice := range c.Choices {
		if choice.Index != 0 { // we never ask for n > 1
			continue
		}
		f.text += choice.Delta.Content
		for _, tc := range choice.Delta.ToolCalls {
			f.calls = append(f.calls, chat.ToolCallDelta{Index: int(tc.Index), ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		if choice.FinishReason != "" {
			f.finishReason = choice.FinishReason
		}
	}
	return f, nil
}

// decodeChunkFast reads a chunk's fields with gjson; ok is false when the
// chunk is not valid JSON or a field Parley reads is not of the type the
// SDK declares for it (then the SDK decides).
func decodeChunkFast(data []byte) (f chunkFields, ok bool) {
	if !gjson.ValidBytes(data) {
		return chunkFields{}, false
	}
	// Read in place: data is not copied into a string for gjson (a copy
	// per chunk), so every string kept is cloned below, since the SSE
	// decoder reuses data for the next event.
	root := gjson.Parse(unsafe.String(unsafe.SliceData(data), len(data)))
	if !root.IsObject() {
		return chunkFields{}, false
	}
	choices := root.Get("choices")
	if choices.Exists() && choices.Type != gjson.Null && !choices.IsArray() {
		return chunkFields{}, false
	}
	if u := root.Get("usage"); u.Exists() && u.Type != gjson.Null {
		if !u.IsObject() {
			return chunkFields{}, false
		}
		prompt, ok1 := integer(u.Get("prompt_tokens"))
		completion, ok2 := integer(u.Get("completion_tokens"))
		if !ok1 || !ok2 {
			return chunkFields{}, false
		}
		f.usage = &chat.Usage{PromptTokens: prompt, CompletionTokens: completion}
	}
	ok = true
	choices.ForEach(func(_, choice gjson.Result) bool {
		if !choice.IsObject() {
			ok = false
			return false
		}
		index, okIndex := integer(choice.Get("index"))
		delta := choice.Get("delta")
		finish := choice.Get("finish_reason")
		content := delta.Get("content")
		calls := delta.Get("tool_calls")
		if !okIndex || !objectOrAbsent(delta) || !stringOrAbsent(finish) || !stringOrAbsent(content) ||
			(calls.Exists() && calls.Type != gjson.Null && !calls.IsArray()) {
			ok = false
			return false
		}
		if index != 0 {
			return true
		}
		f.text += strings.Clone(content.String())
		calls.ForEach(func(_, tc gjson.Result) bool {
			fn := tc.Get("function")
			id, name, args := tc.Get("id"), fn.Get("name"), fn.Get("arguments")
			callIndex, okCall := integer(tc.Get("index"))
			if !tc.IsObject() || !okCall || !objectOrAbsent(fn) || !stringOrAbsent(id) || !stringOrAbsent(name) || !stringOrAbsent(args) {
				ok = false
				return false
			}
			f.calls = append(f.calls, chat.ToolCallDelta{Index: int(callIndex), ID: strings.Clone(id.String()), Name: strings.Clone(name.String()), Arguments: strings.Clone(args.String())})
			return true
		})
		if ok && finish.String() != "" {
			f.finishReason = strings.Clone(finish.String())
		}
		return ok
	})
	if !ok {
		return chunkFields{}, false
	}
	return f, true
}

// integer is a JSON integer (or an absent or null one, 0), as the SDK's
// int64 fields take it.
func integer(r gjson.Result) (int64, bool) {
	switch {
	case !r.Exists() || r.Type == gjson.Null:
		return 0, true
	case r.Type != gjson.Number:
		return 0, false
	}
	// Only plain integers of up to 15 digits: the SDK decides fractions,
	// exponents and huge ones.
	raw := r.Raw
	if len(raw) > 0 && raw[0] == '-' {
		raw = raw[1:]
	}
	if len(raw) == 0 || len(raw) > 15 {
		return 0, false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			return 0, false
		}
	}
	return r.Int(), true
}

func stringOrAbsent(r gjson.Result) bool {
	return !r.Exists() || r.Type == gjson.Null || r.Type == gjson.String
}

func objectOrAbsent(r gjson.Result) bool {
	return !r.Exists() || r.Type == gjson.Null || r.IsObject()
}

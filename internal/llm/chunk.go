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
// was. Before either, a text delta (nearly every event) is read in one
// pass by scanTextChunk (chunkscan.go). FuzzChunkDecoders checks that all
// the ways agree.

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
	// A text delta, nearly every event, in one pass; anything else as
	// below.
	if f, ok := scanTextChunk(data); ok {
		return f, false, nil
	}
	// A valid object is read in one pass per level: its top-level members
	// are the ones gjson.GetBytes would find (the first of each name).
	// Anything else goes the way openai-go's stream goes.
	root, valid := parseObject(data)
	var e gjson.Result
	if valid {
		var top [3]gjson.Result
		members(root, &top, "error", "choices", "usage")
		e = top[0]
		if !e.Exists() {
			if f, ok := chunkFromMembers(top[1], top[2]); ok {
				return f, false, nil
			}
			f, err = decodeChunkSDK(data)
			return f, false, err
		}
	} else {
		e = gjson.GetBytes(data, "error")
	}
	if e.Exists() {
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

// parseObject parses data in place when it is valid JSON whose value is
// an object. data is not copied into a string for gjson (a copy per
// chunk), so every string kept from the result must be cloned: the SSE
// decoder reuses data for the next event.
func parseObject(data []byte) (gjson.Result, bool) {
	if !gjson.ValidBytes(data) {
		return gjson.Result{}, false
	}
	root := gjson.Parse(unsafe.String(unsafe.SliceData(data), len(data)))
	return root, root.IsObject()
}

// members sets out[i] to obj's first member named names[i], as
// obj.Get(names[i]) would, in one pass over obj instead of one per name.
// A name not there leaves its result as it was (not Exists).
func members(obj gjson.Result, out *[3]gjson.Result, names ...string) {
	obj.ForEach(func(key, value gjson.Result) bool {
		for i, name := range names {
			if key.Str == name && !out[i].Exists() {
				out[i] = value
				break
			}
		}
		return true
	})
}

// decodeChunkFast reads a chunk's fields with gjson; ok is false when the
// chunk is not valid JSON or a field Parley reads is not of the type the
// SDK declares for it (then the SDK decides).
func decodeChunkFast(data []byte) (f chunkFields, ok bool) {
	root, valid := parseObject(data)
	if !valid {
		return chunkFields{}, false
	}
	var top [3]gjson.Result
	members(root, &top, "choices", "usage")
	return chunkFromMembers(top[0], top[1])
}

// chunkFromMembers reads a chunk's fields from its choices and usage
// members; ok is false when one is not of the type the SDK declares.
func chunkFromMembers(choices, u gjson.Result) (f chunkFields, ok bool) {
	if choices.Exists() && choices.Type != gjson.Null && !choices.IsArray() {
		return chunkFields{}, false
	}
	if u.Exists() && u.Type != gjson.Null {
		if !u.IsObject() {
			return chunkFields{}, false
		}
		var m [3]gjson.Result
		members(u, &m, "prompt_tokens", "completion_tokens")
		prompt, ok1 := integer(m[0])
		completion, ok2 := integer(m[1])
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
		var c, d [3]gjson.Result
		members(choice, &c, "index", "delta", "finish_reason")
		index, okIndex := integer(c[0])
		delta, finish := c[1], c[2]
		if delta.IsObject() {
			members(delta, &d, "content", "tool_calls")
		}
		content, calls := d[0], d[1]
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
			if !tc.IsObject() {
				ok = false
				return false
			}
			var t, fn [3]gjson.Result
			members(tc, &t, "id", "index", "function")
			if t[2].IsObject() {
				members(t[2], &fn, "name", "arguments")
			}
			id, name, args := t[0], fn[0], fn[1]
			callIndex, okCall := integer(t[1])
			if !okCall || !objectOrAbsent(t[2]) || !stringOrAbsent(id) || !stringOrAbsent(name) || !stringOrAbsent(args) {
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

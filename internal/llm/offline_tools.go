package llm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/parleyhq/parley/internal/chat"
)

// The offline responder's side of tool calling: deterministic documents,
// so demos and tests see the whole artifact path without a model.

// offers reports whether a tool of that name is on offer.
func offers(tools []chat.ToolSpec, name string) bool {
	return slices.ContainsFunc(tools, func(t chat.ToolSpec) bool { return t.Name == name })
}

// asksForDocument reports whether a message asks for something to be
// written: it starts with "write", "draft" or "create".
func asksForDocument(message string) bool {
	first, _, _ := strings.Cut(strings.TrimSpace(strings.ToLower(message)), " ")
	first = strings.TrimFunc(first, func(r rune) bool { return !unicode.IsLetter(r) })
	return first == "write" || first == "draft" || first == "create"
}

// codeWords mark a request for code rather than prose.
var codeWords = []string{"code", "function", "program", "script", "func"}

// documentCall is a create_artifact call for the document a message asks
// for, its arguments streamed in small pieces as a model streams them.
func documentCall(message string) []chat.Delta {
	subject := strings.TrimSpace(message)
	if _, rest, ok := strings.Cut(subject, " "); ok {
		subject = rest
	}
	subject = strings.TrimRight(subject, ".!?")
	if len(subject) > 80 {
		subject = subject[:80]
	}
	title := chat.CleanTitle(subject)
	if title == "" {
		title = "Untitled"
	}
	args := map[string]string{"title": title, "kind": "text", "content": prose(title)}
	lower := strings.ToLower(message)
	if slices.ContainsFunc(codeWords, func(w string) bool { return strings.Contains(lower, w) }) {
		args["kind"], args["language"], args["content"] = "code", "go", code(title)
	}
	raw, _ := json.Marshal(args) // a map of strings always marshals
	deltas := []chat.Delta{{ToolCall: &chat.ToolCallDelta{Index: 0, ID: "call_offline_1", Name: "create_artifact"}}}
	for s := string(raw); s != ""; {
		n := min(24, len(s))
		for n < len(s) && !utf8RuneStart(s[n]) {
			n++
		}
		deltas = append(deltas, chat.Delta{ToolCall: &chat.ToolCallDelta{Index: 0, Arguments: s[:n]}})
		s = s[n:]
	}
	return deltas
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// prose is a short deterministic document about title.
func prose(title string) string {
	return fmt.Sprintf("# %s\n\nThis is a draft about %s, written by the offline model.\n\n"+
		"- What it is\n- Why it matters\n- What to do next\n", title, strings.ToLower(title))
}

// code is a short deterministic Go file about title.
func code(title string) string {
	name := "run"
	for _, w := range strings.Fields(title) {
		if w = strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return r
			}
			return -1
		}, w); w != "" {
			name = strings.ToLower(w[:1]) + w[1:]
			break
		}
	}
	return fmt.Sprintf("package main\n\n// %s does what its title says: %s.\nfunc %s() string {\n\treturn %q\n}\n", name, title, name, title)
}

// toolReply is what the offline model says once its tool calls ran: what
// the last result says it wrote, or that it failed.
func toolReply(msgs []chat.PromptMessage) string {
	last := msgs[len(msgs)-1].Content
	var res struct {
		Title   string `json:"title"`
		Version int    `json:"version"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil || res.Title == "" {
		return "I could not write the document: " + last
	}
	return fmt.Sprintf("I wrote %q; it is saved as version %d.", res.Title, res.Version)
}

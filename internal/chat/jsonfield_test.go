package chat

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestFieldStreamer: however the arguments are cut into fragments, the
// streamed field comes out whole and decoded, and nothing else does.
func TestFieldStreamer(t *testing.T) {
	t.Parallel()
	content := "line one\n\"quoted\" tab\there \\ slash / é 日本 😀 end"
	args, err := json.Marshal(map[string]any{
		"title":   "content is not this",
		"nested":  map[string]any{"content": "nor this", "list": []any{"content", 1}},
		"content": content,
		"kind":    "text",
	})
	if err != nil {
		t.Fatal(err)
	}
	// json.Marshal escapes <, > and & and sorts keys; add a \u escape and
	// a surrogate pair by hand too.
	raw := strings.Replace(string(args), "😀", `\ud83d\ude00`, 1)
	for _, size := range []int{1, 2, 3, 5, 7, 64, len(raw)} {
		f := newFieldStreamer("content")
		var got strings.Builder
		for i := 0; i < len(raw); i += size {
			piece := f.Feed(raw[i:min(i+size, len(raw))])
			if !utf8.ValidString(piece) {
				t.Fatalf("fragments of %d bytes: Feed returned a cut character %q", size, piece)
			}
			got.WriteString(piece)
		}
		if got.String() != content {
			t.Errorf("fragments of %d bytes: got %q, want %q", size, got.String(), content)
		}
	}
	if got := newFieldStreamer("content").Feed(`{"content": 42, "x": "y"}`); got != "" {
		t.Errorf("a non-string field streamed %q", got)
	}
}

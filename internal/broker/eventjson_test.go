package broker

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
)

// eventJSONCases are strings whose JSON encoding has a rule of its own.
var eventJSONCases = []string{
	"", " w41xxxxxxxxxxxx", `say "hi" \ there`, "line\nbreak\r\ttab\b\f", "\x00\x01\x1f\x7f",
	"<script>&amp;</script>", "héllo wörld ✓ 🎉", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate",
	"ends in a partial rune \xe2\x82",
}

// TestAppendEventMatchesJSON: a text delta is written byte for byte as
// encoding/json writes it, other events go through encoding/json, and
// every one decodes back to itself.
func TestAppendEventMatchesJSON(t *testing.T) {
	var events []chat.Event
	for i, s := range eventJSONCases {
		events = append(events, chat.Event{Seq: int64(i + 1), Kind: chat.EventDelta, Text: s})
	}
	events = append(events,
		chat.Event{Seq: 1 << 40, Kind: chat.EventDelta, Text: "big seq"},
		chat.Event{Seq: 3, Kind: chat.EventDelta, Text: "artifact piece", Tool: &chat.ToolEvent{CallID: "c1"}},
		chat.Event{Seq: 1, Kind: chat.EventStarted, Started: &chat.Started{GenerationID: uuid.New(), Model: "m"}},
		chat.Event{Seq: 9, Kind: chat.EventCompleted, Message: &chat.Message{ID: uuid.New(), Content: "<b>done</b>"}},
	)
	for _, ev := range events {
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("event %+v:\n got %s\nwant %s", ev, got, want)
		}
	}
}

// FuzzAppendEvent: for any text and seq, the hand-written encoding of a
// delta is encoding/json's, byte for byte.
func FuzzAppendEvent(f *testing.F) {
	for i, s := range eventJSONCases {
		f.Add(int64(i), s)
	}
	f.Fuzz(func(t *testing.T, seq int64, text string) {
		ev := chat.Event{Seq: seq, Kind: chat.EventDelta, Text: text}
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEvent([]byte("prefix"), ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[len("prefix"):], want) || string(got[:len("prefix")]) != "prefix" {
			t.Fatalf("seq %d text %q:\n got %s\nwant %s", seq, text, got, want)
		}
	})
}

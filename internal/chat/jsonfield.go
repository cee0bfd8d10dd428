package chat

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// fieldStreamer pulls one top-level string field out of a JSON object
// that arrives in fragments, as a model streams a tool call's arguments,
// so the field (an artifact's content) can be shown while it is written.
// It decodes escapes as they complete and ignores everything else; it
// never fails: malformed JSON just yields nothing more.
type fieldStreamer struct {
	field string

	depth    int  // nesting of objects and arrays outside strings
	inString bool // inside a string
	escape   bool // after a backslash
	hex      []byte
	isKey    bool // the string being read is a top-level key
	target   bool // the string being read is the field's value
	key      strings.Builder
	lastKey  string
	afterKey bool   // a top-level key and its colon came; a value is next
	pendingH rune   // a high surrogate waiting for its low half
	partial  []byte // the start of a character cut by a fragment's end
}

func newFieldStreamer(field string) *fieldStreamer { return &fieldStreamer{field: field} }

// Feed consumes the next fragment and returns the newly decoded text of
// the field's value (often ""), always whole characters: one cut by the
// fragment's end comes with the next Feed.
func (f *fieldStreamer) Feed(fragment string) string {
	var out strings.Builder
	out.Write(f.partial)
	f.partial = f.partial[:0]
	for i := 0; i < len(fragment); i++ {
		c := fragment[i]
		if f.inString {
			f.stringByte(c, &out)
			continue
		}
		switch c {
		case '"':
			f.inString = true
			f.isKey = f.depth == 1 && !f.afterKey
			f.target = f.depth == 1 && f.afterKey && f.lastKey == f.field
			f.key.Reset()
		case '{', '[':
			f.depth++
		case '}', ']':
			f.depth--
			if f.depth == 1 {
				f.afterKey = false // a nested value ended
			}
		case ':':
			if f.depth == 1 {
				f.afterKey = true
			}
		case ',':
			if f.depth == 1 {
				f.afterKey = false
			}
		}
	}
	text := out.String()
	// Hold back a character whose last bytes are still to come.
	for cut := len(text) - 1; cut >= 0 && cut >= len(text)-utf8.UTFMax; cut-- {
		if utf8.RuneStart(text[cut]) {
			if !utf8.FullRuneInString(text[cut:]) {
				f.partial = append(f.partial, text[cut:]...)
				text = text[:cut]
			}
			break
		}
	}
	return text
}

// stringByte handles one byte inside a string.
func (f *fieldStreamer) stringByte(c byte, out *strings.Builder) {
	emit := func(s string) {
		switch {
		case f.isKey:
			f.key.WriteString(s)
		case f.target:
			out.WriteString(s)
		}
	}
	if f.hex != nil {
		f.hex = append(f.hex, c)
		if len(f.hex) < 4 {
			return
		}
		n, err := strconv.ParseUint(string(f.hex), 16, 16)
		f.hex = nil
		if err != nil {
			return
		}
		r := rune(n)
		switch {
		case utf16.IsSurrogate(r) && r < 0xDC00:
			f.pendingH = r
		case utf16.IsSurrogate(r) && f.pendingH != 0:
			emit(string(utf16.DecodeRune(f.pendingH, r)))
			f.pendingH = 0
		default:
			emit(string(r))
		}
		return
	}
	if f.escape {
		f.escape = false
		switch c {
		case 'u':
			f.hex = make([]byte, 0, 4)
		case 'n':
			emit("\n")
		case 't':
			emit("\t")
		case 'r':
			emit("\r")
		case 'b':
			emit("\b")
		case 'f':
			emit("\f")
		default: // " \ /
			emit(string(c))
		}
		return
	}
	switch c {
	case '\\':
		f.escape = true
	case '"':
		f.inString = false
		if f.isKey {
			f.lastKey = f.key.String()
		} else if f.depth == 1 {
			f.afterKey = false
		}
		f.isKey, f.target = false, false
	default:
		// Raw bytes pass through whole: a multi-byte character arrives
		// byte by byte and is reassembled by the builder.
		switch {
		case f.isKey:
			f.key.WriteByte(c)
		case f.target:
			out.WriteByte(c)
		}
	}
}

package broker

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/parleyhq/parley/internal/chat"
)

// appendEvent appends e's wire form (encodeEvent) to dst. A text delta,
// nearly every event an answer has, is written here byte for byte as
// encoding/json writes it (TestAppendEventMatchesJSON and FuzzAppendEvent
// hold the two equal), without reflection; any other event goes through
// encoding/json.
func appendEvent(dst []byte, e chat.Event) ([]byte, error) {
	if !plainDelta(e) {
		data, err := json.Marshal(e)
		if err != nil {
			return dst, err
		}
		return append(dst, data...), nil
	}
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, e.Seq, 10)
	dst = append(dst, `,"kind":"delta"`...)
	if e.Text != "" {
		dst = append(dst, `,"text":`...)
		dst = appendJSONString(dst, e.Text)
	}
	return append(dst, '}'), nil
}

// plainDelta reports whether e is a text delta with nothing else set.
func plainDelta(e chat.Event) bool {
	return e.Kind == chat.EventDelta && e.Started == nil && e.Usage == nil && e.Title == "" &&
		e.Tool == nil && e.Message == nil && e.Error == nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json
// does (its HTML escaping included): ", \ and control characters escaped,
// <, > and & as \u003c, \u003e and \u0026, invalid UTF-8 as \ufffd, and
// U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

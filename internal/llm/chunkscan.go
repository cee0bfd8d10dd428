package llm

import (
	"unicode/utf8"
)

// scanTextChunk reads the chunk that makes up nearly all of a streamed
// answer, a text delta, in one pass over its bytes, validating as it goes.
// gjson's way (decodeChunkFast) validates the event, then walks each level
// it reads again, and parses every number on the way: about 1.2 µs a
// chunk, a seventh of the server's CPU while answers stream.
//
// It reads only chunks whose every part is plain: strictly valid JSON (RFC
// 8259, strings in valid UTF-8, at most maxScanDepth levels) whose value is
// an object with no "error" member, no usage (or a null one), choices that
// are null or an array of objects, each with an integer or null index, a
// null or object delta whose content is a string or null and whose
// tool_calls are absent or null, and a string or null finish_reason. The
// names it reads are unescaped and not repeated, and the strings it keeps
// have no \u escapes. For anything else ok is false, and decodeEvent reads
// the event as before (gjson, then openai-go's types). Where ok is true, the
// fields are those decodeChunk reads: FuzzChunkDecoders checks both.
func scanTextChunk(data []byte) (f chunkFields, ok bool) {
	s := jsonScan{b: data}
	s.space()
	if s.peek() != '{' {
		return chunkFields{}, false
	}
	var seenChoices, seenUsage bool
	ok = s.fields(1, func(name []byte) bool {
		switch string(name) {
		case "error":
			return false
		case "usage":
			return once(&seenUsage) && s.null()
		case "choices":
			if !once(&seenChoices) {
				return false
			}
			switch s.peek() {
			case 'n':
				return s.null()
			case '[':
				return s.array(1, func() bool { return s.choice(&f.text, &f.finishReason) })
			}
			return false
		}
		return s.skip(1)
	})
	if !ok {
		return chunkFields{}, false
	}
	s.space()
	if s.i != len(s.b) {
		return chunkFields{}, false
	}
	return f, true
}

// choice reads one element of choices: for index 0, its content is added
// to text and a non-empty finish_reason replaces finish.
func (s *jsonScan) choice(text, finish *string) bool {
	if s.peek() != '{' {
		return false
	}
	var (
		index                            int64
		content, reason                  []byte
		contentEsc, reasonEsc            bool
		seenIndex, seenDelta, seenReason bool
	)
	ok := s.fields(2, func(name []byte) bool {
		var ok bool
		switch string(name) {
		case "index":
			if !once(&seenIndex) {
				return false
			}
			if s.peek() == 'n' {
				return s.null()
			}
			index, ok = s.integer()
			return ok
		case "finish_reason":
			if !once(&seenReason) {
				return false
			}
			reason, reasonEsc, ok = s.stringOrNull()
			return ok
		case "delta":
			if !once(&seenDelta) {
				return false
			}
			switch s.peek() {
			case 'n':
				return s.null()
			case '{':
				return s.delta(&content, &contentEsc)
			}
			return false
		}
		return s.skip(2)
	})
	if !ok || index != 0 {
		return ok
	}
	if len(content) > 0 {
		c, ok := unescape(content, contentEsc)
		if !ok {
			return false
		}
		*text += c
	}
	if len(reason) > 0 {
		r, ok := unescape(reason, reasonEsc)
		if !ok {
			return false
		}
		*finish = r
	}
	return true
}

// delta reads a choice's delta object: its content (nil when absent or
// null), and tool_calls only if null.
func (s *jsonScan) delta(content *[]byte, escaped *bool) bool {
	var seenContent, seenCalls bool
	return s.fields(3, func(name []byte) bool {
		switch string(name) {
		case "content":
			if !once(&seenContent) {
				return false
			}
			var ok bool
			*content, *escaped, ok = s.stringOrNull()
			return ok
		case "tool_calls":
			return once(&seenCalls) && s.null()
		}
		return s.skip(3)
	})
}

// once reports whether a name is met for the first time, and marks it
// met: a repeated name is left to the other readers.
func once(seen *bool) bool {
	if *seen {
		return false
	}
	*seen = true
	return true
}

// unescape is the JSON string contents raw as a string of its own,
// decoding the two-character escapes; ok is false for a \u escape.
func unescape(raw []byte, escaped bool) (string, bool) {
	if !escaped {
		return string(raw), true
	}
	dst := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++ // str checked that an escape is whole
		switch raw[i] {
		case '"', '\\', '/':
			dst = append(dst, raw[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		default: // 'u'
			return "", false
		}
	}
	return string(dst), true
}

// maxScanDepth bounds the nesting scanTextChunk follows; deeper chunks go
// the other way.
const maxScanDepth = 32

// jsonScan is a strict, validating reader of one JSON text.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads the object at s.i, calling member with each name and s.i at
// the member's value, which member must read.
func (s *jsonScan) object(depth int, member func(key []byte, escaped bool) bool) bool {
	if depth > maxScanDepth {
		return false
	}
	s.i++ // {
	s.space()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		key, escaped, ok := s.str()
		if !ok {
			return false
		}
		s.space()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.space()
		if !member(key, escaped) {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// fields is object for an object whose names are compared: an escaped
// name fails it.
func (s *jsonScan) fields(depth int, field func(name []byte) bool) bool {
	return s.object(depth, func(key []byte, escaped bool) bool { return !escaped && field(key) })
}

// stringOrNull reads a string or null (raw nil).
func (s *jsonScan) stringOrNull() (raw []byte, escaped, ok bool) {
	switch s.peek() {
	case 'n':
		return nil, false, s.null()
	case '"':
		return s.str()
	}
	return nil, false, false
}

// array reads the array at s.i, calling elem with s.i at each element,
// which elem must read.
func (s *jsonScan) array(depth int, elem func() bool) bool {
	if depth > maxScanDepth {
		return false
	}
	s.i++ // [
	s.space()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// skip reads any value.
func (s *jsonScan) skip(depth int) bool {
	switch c := s.peek(); {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{':
		return s.object(depth+1, func([]byte, bool) bool { return s.skip(depth + 1) })
	case c == '[':
		return s.array(depth+1, func() bool { return s.skip(depth + 1) })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.null()
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return false
}

func (s *jsonScan) null() bool { return s.literal("null") }

func (s *jsonScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads the string at s.i and returns what is between its quotes;
// escaped reports a backslash in it. Control characters, malformed
// escapes and invalid UTF-8 make it fail.
func (s *jsonScan) str() (raw []byte, escaped, ok bool) {
	s.i++ // "
	start := s.i
	wide := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		if plainByte[c] {
			s.i++
			continue
		}
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			if wide && !utf8.Valid(raw) {
				return nil, false, false
			}
			return raw, escaped, true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if len(s.b)-s.i < 6 || !isHex(s.b[s.i+2]) || !isHex(s.b[s.i+3]) || !isHex(s.b[s.i+4]) || !isHex(s.b[s.i+5]) {
					return nil, false, false
				}
				s.i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			wide = wide || c >= utf8.RuneSelf
			s.i++
		}
	}
	return nil, false, false
}

// plainByte marks the bytes a string holds as they are: not a quote, a
// backslash, a control character or part of a multi-byte character.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads a number as RFC 8259 writes one.
func (s *jsonScan) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more digits.
func (s *jsonScan) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// integer reads a number that is a plain integer of at most 15 digits
// (what integer in chunk.go takes without the SDK); anything else fails.
func (s *jsonScan) integer() (int64, bool) {
	start := s.i
	if !s.number() {
		return 0, false
	}
	raw := s.b[start:s.i]
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) == 0 || len(raw) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

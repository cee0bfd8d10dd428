package llm

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	goreflect "reflect"

	"github.com/openai/openai-go/v3/packages/ssestream"
)

// The SSE framing of a streamed answer. openai-go's text/event-stream
// decoder reads the body through a bufio.Scanner whose buffer starts at
// 4 KiB, and builds each event's data in a new slice. An open answer holds
// that buffer for as long as it streams, while its events are a few
// hundred bytes. sseDecoder is the same decoder, line for line, with a
// buffer that starts at sseStartBuffer and grows as the SDK's does when a
// line is longer, and one data slice reused from event to event (Data is
// valid until the next Next; decodeEvent copies what it keeps).
// TestSSEDecodersAgree and FuzzSSEDecoders hold it to the SDK's.

// sseStartBuffer is the scanner's first buffer.
const sseStartBuffer = 512

// sdkDefaultDecoder is the type of openai-go's own text/event-stream
// decoder, which NewDecoder returns unless another decoder is registered
// for the response's content type.
var sdkDefaultDecoder = goreflect.TypeOf(ssestream.NewDecoder(&http.Response{Body: http.NoBody}))

// newSSEDecoder returns the decoder ssestream.NewDecoder would, with ours
// in place of the SDK's default one; nil when NewDecoder returns nil.
func newSSEDecoder(res *http.Response) ssestream.Decoder {
	dec := ssestream.NewDecoder(res)
	if dec == nil || goreflect.TypeOf(dec) != sdkDefaultDecoder {
		return dec
	}
	scn := bufio.NewScanner(res.Body)
	scn.Buffer(make([]byte, 0, sseStartBuffer), bufio.MaxScanTokenSize<<9)
	return &sseDecoder{rc: res.Body, scn: scn}
}

// sseDecoder is openai-go's eventStreamDecoder (packages/ssestream) with a
// smaller first buffer and a reused data slice.
type sseDecoder struct {
	evt   ssestream.Event
	rc    io.ReadCloser
	scn   *bufio.Scanner
	event string // the event being read: its type
	data  []byte // and its data, reused from one event to the next
	err   error
}

func (s *sseDecoder) Next() bool {
	if s.err != nil {
		return false
	}
	s.event, s.data = "", s.data[:0]
	// An answer's goroutine waits in Scan for the provider's next line, so
	// the line's handling is a call of its own (streamTurn in package chat
	// says why the frames of that wait are kept small).
	for s.scn.Scan() {
		if s.line(s.scn.Bytes()) {
			return true
		}
	}
	if s.scn.Err() != nil {
		s.err = s.scn.Err()
	}
	return false
}

// line takes one line of the stream and reports whether it dispatched an
// event.
func (s *sseDecoder) line(txt []byte) bool {
	// Dispatch event on an empty line.
	if len(txt) == 0 {
		if len(s.data) == 0 {
			s.event = ""
			return false
		}
		s.evt = ssestream.Event{Type: s.event, Data: s.data}
		return true
	}
	// Split a string like "event: bar" into name="event" and value=" bar".
	name, value, _ := bytes.Cut(txt, []byte(":"))
	// Consume an optional space after the colon if it exists.
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "event":
		s.event = string(value)
	case "data":
		s.data = append(s.data, value...)
		s.data = append(s.data, '\n')
	}
	// Anything else, and a line of the form ": something" (a comment), is
	// skipped.
	return false
}

func (s *sseDecoder) Event() ssestream.Event { return s.evt }

func (s *sseDecoder) Close() error { return s.rc.Close() }

func (s *sseDecoder) Err() error { return s.err }

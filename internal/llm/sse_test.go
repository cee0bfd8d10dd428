package llm

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

// recordedStreams are SSE bodies as providers send them, and odd ones:
// comments, named events, multi-line data, CRLF, no final blank line,
// lines longer than the first buffer and than the SDK's.
var recordedStreams = []string{
	"data: " + recordedChunks[0] + "\n\ndata: " + recordedChunks[1] + "\n\ndata: [DONE]\n\n",
	": keep-alive\n\ndata: {\"a\":1}\n\n: another\ndata: {\"b\":2}\n\n",
	"event: error\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n",
	"data: one\ndata: two\n\n\n\ndata:three\n\n",
	"data: crlf\r\n\r\ndata: next\r\n\r\n",
	"data: no end",
	"data: " + strings.Repeat("x", 600) + "\n\ndata: " + strings.Repeat("y", 5000) + "\n\ndata: z\n\n",
	"event: a\n\nevent: b\ndata: after an empty event\n\n",
	"id: 7\nretry: 100\ndata: fields we ignore\n\n",
	"",
	"\n\n\n",
}

type decoded struct {
	Events []ssestream.Event
	Err    bool
}

// decodeAll reads every event of body with dec, copying each event's data
// before the next (ours reuses it).
func decodeAll(dec ssestream.Decoder) decoded {
	var d decoded
	for dec.Next() {
		ev := dec.Event()
		d.Events = append(d.Events, ssestream.Event{Type: ev.Type, Data: bytes.Clone(ev.Data)})
	}
	d.Err = dec.Err() != nil
	return d
}

func sseResponse(body string) *http.Response {
	return &http.Response{Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(strings.NewReader(body))}
}

func checkSSEAgree(t *testing.T, body string) {
	t.Helper()
	sdk := decodeAll(ssestream.NewDecoder(sseResponse(body)))
	dec := newSSEDecoder(sseResponse(body))
	if _, ok := dec.(*sseDecoder); !ok {
		t.Fatalf("newSSEDecoder returned %T, want *sseDecoder", dec)
	}
	if diff := cmp.Diff(sdk, decodeAll(dec)); diff != "" {
		t.Errorf("body %q: SDK's decoder (-) and ours (+) differ:\n%s", body, diff)
	}
}

// TestSSEDecodersAgree: every recorded stream is split into the same
// events by our decoder as by openai-go's.
func TestSSEDecodersAgree(t *testing.T) {
	t.Parallel()
	for _, body := range recordedStreams {
		checkSSEAgree(t, body)
	}
}

// FuzzSSEDecoders holds our decoder to openai-go's on any body.
func FuzzSSEDecoders(f *testing.F) {
	for _, body := range recordedStreams {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		checkSSEAgree(t, body)
	})
}

// registeredDecoder stands for a decoder registered for a content type.
type registeredDecoder struct{ ssestream.Decoder }

// TestSSEDecoderOthers: a content type with a decoder of its own keeps
// it, as ssestream.NewDecoder does, and a response without a body has no
// decoder.
func TestSSEDecoderOthers(t *testing.T) {
	ssestream.RegisterDecoder("application/x-parley-test", func(io.ReadCloser) ssestream.Decoder { return registeredDecoder{} })
	res := &http.Response{Header: http.Header{"Content-Type": {"application/x-parley-test"}}, Body: http.NoBody}
	if dec := newSSEDecoder(res); dec != (registeredDecoder{}) {
		t.Errorf("registered content type: decoder %T, want the registered one", dec)
	}
	if dec := newSSEDecoder(&http.Response{}); dec != nil {
		t.Errorf("no body: decoder %T, want nil", dec)
	}
}

package attachment_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.NRGBA{R: 255, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngHeader is a PNG's signature and header chunk alone, claiming w×h
// pixels of the given bit depth and colour type.
func pngHeader(w, h uint32, depth, colourType byte) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = depth, colourType
	out := append([]byte("\x89PNG\r\n\x1a\n"), binary.BigEndian.AppendUint32(nil, 13)...)
	out = append(append(out, "IHDR"...), ihdr...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(append([]byte("IHDR"), ihdr...)))
}

// TestCheck: the content decides the type and the caps hold before any
// decode; every refusal is invalid_argument naming the attachment.
func TestCheck(t *testing.T) {
	limits := attachment.DefaultLimits()
	now := time.Now()
	t.Run("Accepted", func(t *testing.T) {
		got, err := attachment.Check(limits, []attachment.Upload{
			{Name: "dot.png", Content: pngOf(t, 3, 2)},
			{Name: "notes.md", Content: []byte("# Notes\n")},
			{Name: "page.html", Content: []byte("<!DOCTYPE html><html><script>x()</script></html>")},
		}, now)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Kind != attachment.KindImage || got[0].ContentType != "image/png" || got[0].Width != 3 || got[0].Height != 2 {
			t.Errorf("image: %+v", got[0])
		}
		for _, a := range got[1:] {
			if a.Kind != attachment.KindText || a.ContentType != "text/plain; charset=utf-8" {
				t.Errorf("%s: kind %v, type %q; want text kept as text/plain", a.Name, a.Kind, a.ContentType)
			}
		}
	})
	refused := []struct {
		name    string
		uploads []attachment.Upload
		want    string
	}{
		{"ImageThatIsHTML", []attachment.Upload{{Name: "cat.png", Content: []byte("<!DOCTYPE html><html></html>")}}, "is named as an image but its content is text/html"},
		{"SideTooLong", []attachment.Upload{{Name: "wide.png", Content: pngHeader(9000, 1, 8, 6)}}, "is 9000x1 pixels; each side must be 1 to 8192"},
		{"TooManyPixels", []attachment.Upload{{Name: "big.png", Content: pngHeader(5000, 5000, 8, 6)}}, "may have at most 16000000"},
		{"TooDeepToDecode", []attachment.Upload{{Name: "deep.png", Content: pngHeader(3000, 3000, 16, 6)}}, "of 8-byte colour; an image may decode to at most 64 MiB"},
		{"HeaderOnly", []attachment.Upload{{Name: "cut.png", Content: pngHeader(4, 4, 8, 6)}}, "does not decode as image/png"},
		{"TooMany", make([]attachment.Upload, limits.MaxCount+1), "attachments: must hold at most"},
		{"Empty", []attachment.Upload{{Name: "e.txt"}}, "attachments[0]"},
		{"NUL", []attachment.Upload{{Name: "n.txt", Content: []byte("a\x00b")}}, "attachments[0]"},
		{"BigText", []attachment.Upload{{Name: "big.txt", Content: bytes.Repeat([]byte("x"), limits.MaxTextBytes+1)}}, "a text file may be at most"},
		{"PathInName", []attachment.Upload{{Name: "../x.txt", Content: []byte("x")}}, "attachments[0].name"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attachment.Check(limits, tc.uploads, now)
			if apperr.CodeOf(err) != apperr.Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want invalid_argument mentioning %q", err, tc.want)
			}
		})
	}
}

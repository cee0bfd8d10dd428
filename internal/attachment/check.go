package attachment

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/image/webp"

	"github.com/parleyhq/parley/internal/apperr"
)

// imageCodec reads one image format: its header alone, and all of it.
type imageCodec struct {
	config func([]byte) (image.Config, error)
	decode func([]byte) error
}

// imageCodecs are the formats accepted, by the type DetectContentType
// names. GIFs decode their first frame only (gif.Decode), so a file of a
// million frames costs one frame.
var imageCodecs = map[string]imageCodec{
	"image/png": {
		config: func(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) error { _, err := png.Decode(bytes.NewReader(b)); return err },
	},
	"image/jpeg": {
		config: func(b []byte) (image.Config, error) { return jpeg.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) error { _, err := jpeg.Decode(bytes.NewReader(b)); return err },
	},
	"image/gif": {
		config: func(b []byte) (image.Config, error) { return gif.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) error { _, err := gif.Decode(bytes.NewReader(b)); return err },
	},
	"image/webp": {
		config: func(b []byte) (image.Config, error) { return webp.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) error { _, err := webp.Decode(bytes.NewReader(b)); return err },
	},
}

// imageExtensions are the names that claim an image; a file named so must
// be one.
var imageExtensions = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".webp": true}

// Check decides what each upload is and refuses those the limits or the
// rules refuse, with apperr Invalid naming the attachment
// ("attachments[1]") and its file name. The content alone decides the
// type: net/http.DetectContentType, then for images the format's header
// (dimensions checked before decoding) and a full decode, for text a
// check that every byte is UTF-8 without NUL. It returns the attachments
// ready to save, with new ids and their content.
func Check(l Limits, uploads []Upload, now time.Time) ([]Attachment, error) {
	if len(uploads) > l.MaxCount {
		return nil, apperr.InvalidField("attachments", "must hold at most %d files, got %d", l.MaxCount, len(uploads))
	}
	total := 0
	out := make([]Attachment, 0, len(uploads))
	for i, u := range uploads {
		field := fmt.Sprintf("attachments[%d]", i)
		if err := checkName(u.Name); err != nil {
			return nil, apperr.InvalidField(field+".name", "%s", err)
		}
		a, err := checkOne(l, u)
		if err != nil {
			return nil, apperr.InvalidField(field, "(%q) %s", u.Name, err)
		}
		total += len(u.Content)
		if total > l.MaxTotalBytes {
			return nil, apperr.InvalidField("attachments", "must total at most %d bytes, got %d by %s", l.MaxTotalBytes, total, field)
		}
		sum := sha256.Sum256(u.Content)
		a.ID, a.Name, a.Content, a.SizeBytes = uuid.New(), u.Name, u.Content, int64(len(u.Content))
		a.SHA256, a.CreateTime = hex.EncodeToString(sum[:]), now
		out = append(out, a)
	}
	return out, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("must not be empty")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("must be at most %d bytes, got %d", MaxNameBytes, len(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("must be valid UTF-8")
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("must be a file name, without / or \\")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("must not contain control characters")
	}
	return nil
}

// maxDecodeBytes bounds the pixels one image check may allocate, and
// decodeSlots how many checks decode at once in the process: together at
// most 128 MiB, however many messages with images arrive at once.
const maxDecodeBytes = 64 << 20

var decodeSlots = make(chan struct{}, 2)

// bytesPerPixel is what a decoded pixel of m takes in memory.
func bytesPerPixel(m color.Model) int {
	switch m {
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	case color.Gray16Model:
		return 2
	}
	return 4
}

// checkOne sniffs and checks one upload's content.
func checkOne(l Limits, u Upload) (Attachment, error) {
	if len(u.Content) == 0 {
		return Attachment{}, fmt.Errorf("is empty")
	}
	sniffed := http.DetectContentType(u.Content)
	mediaType, _, _ := strings.Cut(sniffed, ";")
	claimsImage := imageExtensions[strings.ToLower(path.Ext(u.Name))]
	if codec, ok := imageCodecs[mediaType]; ok {
		return checkImage(l, u, mediaType, codec)
	}
	if claimsImage {
		return Attachment{}, fmt.Errorf("is named as an image but its content is %s", mediaType)
	}
	switch sniffed {
	case "text/plain; charset=utf-8", "text/html; charset=utf-8", "text/xml; charset=utf-8":
		// Kept and served as plain text whatever it sniffs as: a page or
		// an SVG served as text/html or text/xml would run its scripts on
		// the origin that serves it (a signed URL's, or the app's when a
		// client makes a blob of it).
		return checkText(l, u, "text/plain; charset=utf-8")
	}
	return Attachment{}, fmt.Errorf("is %s, which is not accepted: send PNG, JPEG, WebP or GIF images, or UTF-8 text files", mediaType)
}

func checkImage(l Limits, u Upload, mediaType string, codec imageCodec) (Attachment, error) {
	if len(u.Content) > l.MaxImageBytes {
		return Attachment{}, fmt.Errorf("is %d bytes; an image may be at most %d", len(u.Content), l.MaxImageBytes)
	}
	cfg, err := codec.config(u.Content)
	if err != nil {
		return Attachment{}, fmt.Errorf("is not a readable %s: %v", mediaType, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > l.MaxImageSide || cfg.Height > l.MaxImageSide {
		return Attachment{}, fmt.Errorf("is %dx%d pixels; each side must be 1 to %d", cfg.Width, cfg.Height, l.MaxImageSide)
	}
	if cfg.Width*cfg.Height > l.MaxImagePixels {
		return Attachment{}, fmt.Errorf("is %dx%d pixels; an image may have at most %d", cfg.Width, cfg.Height, l.MaxImagePixels)
	}
	// What the decode will allocate: 16-bit colour takes 8 bytes a pixel.
	if need := cfg.Width * cfg.Height * bytesPerPixel(cfg.ColorModel); need > maxDecodeBytes {
		return Attachment{}, fmt.Errorf("is %dx%d pixels of %d-byte colour; an image may decode to at most %d MiB", cfg.Width, cfg.Height, bytesPerPixel(cfg.ColorModel), maxDecodeBytes>>20)
	}
	decodeSlots <- struct{}{}
	err = codec.decode(u.Content)
	<-decodeSlots
	if err != nil {
		return Attachment{}, fmt.Errorf("does not decode as %s: %v", mediaType, err)
	}
	return Attachment{Kind: KindImage, ContentType: mediaType, Width: cfg.Width, Height: cfg.Height}, nil
}

func checkText(l Limits, u Upload, contentType string) (Attachment, error) {
	if len(u.Content) > l.MaxTextBytes {
		return Attachment{}, fmt.Errorf("is %d bytes; a text file may be at most %d", len(u.Content), l.MaxTextBytes)
	}
	// DetectContentType reads 512 bytes: the rest must be text as well.
	if !utf8.Valid(u.Content) || bytes.IndexByte(u.Content, 0) >= 0 {
		return Attachment{}, fmt.Errorf("is not UTF-8 text throughout")
	}
	return Attachment{Kind: KindText, ContentType: contentType}, nil
}

package rpc_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/attachment"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// textModel is offered beside fakeModel but cannot read images.
const textModel = "fake-text-model"

// attachmentEnv is a server over the fake model with fakeModel as its
// only vision model and small caps, so bad inputs stay small.
func attachmentEnv(t *testing.T, fake *llmtest.Server, opts apitest.Options) *apitest.Env {
	t.Helper()
	limits := attachment.DefaultLimits()
	limits.MaxCount, limits.MaxTextBytes = 2, 1024
	opts.VisionModels, opts.AttachmentLimits = []string{fakeModel}, &limits
	env := fakeEnvModels(t, fake, opts, fakeModel, textModel)
	return env
}

func testPNG(t testing.TB) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	img.Set(1, 1, color.NRGBA{R: 255, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gifBomb is a valid one-pixel GIF whose logical screen claims
// 65535x65535 pixels: decoding it would allocate 4 GiB.
func gifBomb(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, image.NewPaletted(image.Rect(0, 0, 1, 1), color.Palette{color.Black, color.White}), nil); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	copy(out[6:10], []byte{0xff, 0xff, 0xff, 0xff})
	return out
}

// deepPNG is the header of a PNG of w×h pixels of 16-bit RGBA colour (8
// bytes a pixel decoded), with no pixels after it: enough for the checks
// that read only the header to decide.
func deepPNG(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 16, 6 // bit depth, colour type RGBA
	chunk := func(typ string, data []byte) []byte {
		out := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		out = append(append(out, typ...), data...)
		return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	out := []byte("\x89PNG\r\n\x1a\n")
	return append(append(out, chunk("IHDR", ihdr)...), chunk("IEND", nil)...)
}

func sendWith(ctx context.Context, c parleyv1connect.ChatServiceClient, convID, model string, files ...*parleyv1.AttachmentUpload) (events, error) {
	stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{
		ConversationId: convID, Content: "What is in these?", Model: model, Attachments: files,
	}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var out events
	for stream.Receive() {
		out = append(out, stream.Msg())
	}
	return out, stream.Err()
}

// lastUserMessage is the last user message of the last request the fake model received.
func lastUserMessage(t *testing.T, fake *llmtest.Server) llmtest.RecordedMessage {
	t.Helper()
	reqs := fake.Requests()
	if len(reqs) == 0 {
		t.Fatal("the model was not asked")
	}
	msgs := reqs[len(reqs)-1].Messages
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i]
		}
	}
	t.Fatal("no user message in the request")
	return llmtest.RecordedMessage{}
}

func TestAttachments(t *testing.T) {
	t.Parallel()
	pic := testPNG(t)
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.NewServer(t)
			env := attachmentEnv(t, fake, apitest.Options{})
			ctx := testCtx(t)
			owner, stranger := uuid.New(), uuid.New()
			c := env.ChatClient(t, protocol, owner)
			conv := create(t, c, "pics")

			t.Run("ImageReachesVisionModel", func(t *testing.T) {
				evs, err := sendWith(ctx, c, conv.Id, fakeModel, &parleyv1.AttachmentUpload{Name: "dot.png", Content: pic})
				if err != nil {
					t.Fatal(err)
				}
				user := started(t, evs).GetUserMessage()
				if len(user.Attachments) != 1 {
					t.Fatalf("user message attachments = %v", user.Attachments)
				}
				a := user.Attachments[0]
				if a.Kind != parleyv1.AttachmentKind_ATTACHMENT_KIND_IMAGE || a.ContentType != "image/png" || a.Width != 3 || a.Height != 2 || a.SizeBytes != int64(len(pic)) || a.Name != "dot.png" || a.MessageId != user.Id {
					t.Errorf("attachment = %v", a)
				}
				got := lastUserMessage(t, fake)
				if len(got.Images) != 1 || got.Images[0].MediaType != "image/png" || !bytes.Equal(got.Images[0].Data, pic) {
					t.Fatalf("the model received images %+v, want the PNG as a data: URL", got.Images)
				}
				if !strings.Contains(got.Content, "What is in these?") {
					t.Errorf("the model received text %q", got.Content)
				}

				res, err := env.AttachmentClient(t, protocol, owner).GetAttachment(ctx, connect.NewRequest(&parleyv1.GetAttachmentRequest{AttachmentId: a.Id}))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(res.Msg.Content, pic) || res.Msg.Url != "" || res.Msg.Attachment.Sha256 != a.Sha256 {
					t.Errorf("GetAttachment = %d bytes, url %q", len(res.Msg.Content), res.Msg.Url)
				}
				_, err = env.AttachmentClient(t, protocol, stranger).GetAttachment(ctx, connect.NewRequest(&parleyv1.GetAttachmentRequest{AttachmentId: a.Id}))
				wantCode(t, err, connect.CodeNotFound, "attachment not found")

				list, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id}))
				if err != nil {
					t.Fatal(err)
				}
				if m := list.Msg.Messages[0]; len(m.Attachments) != 1 || m.Attachments[0].Id != a.Id {
					t.Errorf("ListMessages user message attachments = %v", m.Attachments)
				}

				// A regeneration shows the model the image again.
				answer := completed(t, evs)
				before := len(fake.Requests())
				stream, err := c.RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: answer.Id}))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := collect(t, stream, 1); err != nil {
					t.Fatal(err)
				}
				if len(fake.Requests()) == before {
					t.Fatal("regeneration did not ask the model")
				}
				if got := lastUserMessage(t, fake); len(got.Images) != 1 || !bytes.Equal(got.Images[0].Data, pic) {
					t.Errorf("regeneration: the model received images %+v", got.Images)
				}
			})

			t.Run("NonVisionModelRefuses", func(t *testing.T) {
				conv := create(t, c, "no vision")
				_, err := sendWith(ctx, c, conv.Id, textModel, &parleyv1.AttachmentUpload{Name: "dot.png", Content: pic})
				wantCode(t, err, connect.CodeInvalidArgument, `model "fake-text-model" cannot read images`)
			})

			t.Run("TextFileInlined", func(t *testing.T) {
				conv := create(t, c, "notes")
				evs, err := sendWith(ctx, c, conv.Id, textModel, &parleyv1.AttachmentUpload{Name: "plan.md", Content: []byte("# Plan\n\nShip the attachments.")})
				if err != nil {
					t.Fatal(err)
				}
				if a := started(t, evs).GetUserMessage().Attachments; len(a) != 1 || a[0].Kind != parleyv1.AttachmentKind_ATTACHMENT_KIND_TEXT {
					t.Fatalf("attachments = %v", a)
				}
				got := lastUserMessage(t, fake)
				if !strings.Contains(got.Content, "<file name=\"plan.md\">\n# Plan\n\nShip the attachments.\n</file>") || len(got.Images) != 0 {
					t.Errorf("the model received %q", got.Content)
				}
			})

			t.Run("MarkupKeptAsPlainText", func(t *testing.T) {
				// A page or an SVG is text to the model, and plain text to
				// whoever reads it back: never a type a browser renders.
				conv := create(t, c, "markup")
				page := []byte("<!DOCTYPE html><html><script>alert(1)</script></html>")
				evs, err := sendWith(ctx, c, conv.Id, textModel, &parleyv1.AttachmentUpload{Name: "page.html", Content: page})
				if err != nil {
					t.Fatal(err)
				}
				a := started(t, evs).GetUserMessage().Attachments
				if len(a) != 1 || a[0].ContentType != "text/plain; charset=utf-8" {
					t.Fatalf("attachments = %v, want one text/plain", a)
				}
				res, err := env.AttachmentClient(t, protocol, owner).GetAttachment(ctx, connect.NewRequest(&parleyv1.GetAttachmentRequest{AttachmentId: a[0].Id}))
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Msg.GetAttachment().GetContentType(); got != "text/plain; charset=utf-8" {
					t.Errorf("GetAttachment says %q, want text/plain", got)
				}
			})

			t.Run("EditCarriesAttachments", func(t *testing.T) {
				conv := create(t, c, "edit")
				evs, err := sendWith(ctx, c, conv.Id, fakeModel)
				if err != nil {
					t.Fatal(err)
				}
				stream, err := c.EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{
					MessageId: started(t, evs).GetUserMessage().Id, Content: "And this?", Model: fakeModel,
					Attachments: []*parleyv1.AttachmentUpload{{Name: "data.csv", Content: []byte("a,b\n1,2\n")}},
				}))
				if err != nil {
					t.Fatal(err)
				}
				edited, err := collect(t, stream, 1)
				if err != nil {
					t.Fatal(err)
				}
				if a := started(t, edited).GetUserMessage().Attachments; len(a) != 1 || a[0].Name != "data.csv" {
					t.Errorf("edited attachments = %v", a)
				}
				if got := lastUserMessage(t, fake); !strings.Contains(got.Content, "<file name=\"data.csv\">\na,b\n1,2\n") {
					t.Errorf("the model received %q", got.Content)
				}
			})

			t.Run("BadInputs", func(t *testing.T) {
				conv := create(t, c, "bad")
				small := &parleyv1.AttachmentUpload{Name: "a.txt", Content: []byte("a")}
				for _, tc := range []struct {
					name  string
					files []*parleyv1.AttachmentUpload
					want  string
				}{
					{"PNGThatIsHTML", []*parleyv1.AttachmentUpload{{Name: "cat.png", Content: []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")}}, `attachments[0]: ("cat.png") is named as an image but its content is text/html`},
					{"GIFBomb", []*parleyv1.AttachmentUpload{{Name: "bomb.gif", Content: gifBomb(t)}}, `attachments[0]: ("bomb.gif") is 65535x65535 pixels`},
					// Within the side and pixel caps, but 72 MiB decoded.
					{"DeepPNG", []*parleyv1.AttachmentUpload{{Name: "deep.png", Content: deepPNG(3000, 3000)}}, `attachments[0]: ("deep.png") is 3000x3000 pixels of 8-byte colour; an image may decode to at most 64 MiB`},
					{"HugeText", []*parleyv1.AttachmentUpload{small, {Name: "big.txt", Content: bytes.Repeat([]byte("x"), 1025)}}, `attachments[1]: ("big.txt") is 1025 bytes; a text file may be at most 1024`},
					{"TooMany", []*parleyv1.AttachmentUpload{small, small, small}, "attachments: must hold at most 2 files, got 3"},
					{"UnknownType", []*parleyv1.AttachmentUpload{{Name: "doc.pdf", Content: []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")}}, `("doc.pdf") is application/pdf, which is not accepted`},
					{"BinaryAfterText", []*parleyv1.AttachmentUpload{{Name: "x.txt", Content: append(bytes.Repeat([]byte("a"), 600), 0, 1, 2)}}, "is not UTF-8 text throughout"},
					{"TruncatedPNG", []*parleyv1.AttachmentUpload{{Name: "cut.png", Content: pic[:len(pic)-20]}}, "does not decode as image/png"},
					{"BadName", []*parleyv1.AttachmentUpload{{Name: "../etc/passwd", Content: []byte("x")}}, "attachments[0].name"},
				} {
					t.Run(tc.name, func(t *testing.T) {
						before := len(fake.Requests())
						_, err := sendWith(ctx, c, conv.Id, fakeModel, tc.files...)
						wantCode(t, err, connect.CodeInvalidArgument, tc.want)
						if len(fake.Requests()) != before {
							t.Error("the model was asked for a refused message")
						}
					})
				}
				list, err := c.ListMessages(ctx, connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: conv.Id}))
				if err != nil {
					t.Fatal(err)
				}
				if len(list.Msg.Messages) != 0 {
					t.Errorf("refused messages were saved: %v", list.Msg.Messages)
				}
			})
		})
	}
}

// TestAttachmentsExportAndDelete: ExportMyData carries a message's
// attachments with their content; deleting the conversation removes them.
func TestAttachmentsExportAndDelete(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t)
	env := attachmentEnv(t, fake, apitest.Options{})
	pic := testPNG(t)
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			owner := uuid.New()
			c := env.ChatClient(t, protocol, owner)
			conv := create(t, c, "export")
			evs, err := sendWith(ctx, c, conv.Id, fakeModel, &parleyv1.AttachmentUpload{Name: "dot.png", Content: pic})
			if err != nil {
				t.Fatal(err)
			}
			a := started(t, evs).GetUserMessage().Attachments[0]

			doc, _ := export(t, env.UserClient(t, protocol, owner), 0, "")
			var exported struct {
				Conversations []struct {
					Messages []struct {
						Attachments []struct {
							ID            string `json:"id"`
							Name          string `json:"name"`
							ContentType   string `json:"content_type"`
							ContentBase64 string `json:"content_base64"`
						} `json:"attachments"`
					} `json:"messages"`
				} `json:"conversations"`
			}
			if err := json.Unmarshal(doc, &exported); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, cv := range exported.Conversations {
				for _, m := range cv.Messages {
					for _, x := range m.Attachments {
						content, err := base64.StdEncoding.DecodeString(x.ContentBase64)
						if x.ID == a.Id && x.Name == "dot.png" && x.ContentType == "image/png" && err == nil && bytes.Equal(content, pic) {
							found = true
						}
					}
				}
			}
			if !found {
				t.Fatalf("the export does not hold the attachment with its content: %s", doc)
			}

			if _, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id})); err != nil {
				t.Fatal(err)
			}
			_, err = env.AttachmentClient(t, protocol, owner).GetAttachment(ctx, connect.NewRequest(&parleyv1.GetAttachmentRequest{AttachmentId: a.Id}))
			wantCode(t, err, connect.CodeNotFound, "")
		})
	}
}

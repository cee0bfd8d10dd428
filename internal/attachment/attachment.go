// Package attachment holds the rules for files users attach to their
// messages: which files are accepted (the content decides, never the
// client's claim), how large they may be, how they are kept (in
// PostgreSQL, or in object storage behind the Blobs interface) and who may
// read them.
//
// It knows nothing of protobuf, SQL or any storage SDK: internal/store
// implements Store and internal/objstore implements Blobs.
package attachment

import (
	"time"

	"github.com/google/uuid"
)

// Kind says how the model is given an attachment.
type Kind string

// The kinds of attachments.
const (
	// KindImage is a PNG, JPEG, WebP or GIF image, given to vision models
	// as an image part.
	KindImage Kind = "image"
	// KindText is a UTF-8 text file, inlined into the prompt under its name.
	KindText Kind = "text"
)

// Attachment is a file attached to a user message. Content is filled only
// where a caller needs the bytes (building a prompt, GetAttachment).
type Attachment struct {
	ID             uuid.UUID
	MessageID      uuid.UUID
	ConversationID uuid.UUID
	Name           string
	ContentType    string
	Kind           Kind
	SizeBytes      int64
	Width, Height  int
	SHA256         string
	CreateTime     time.Time
	// ObjectKey names the object holding the content when it is kept in
	// object storage; empty when the content is in the database.
	ObjectKey string
	Content   []byte
}

// Upload is a file as a client sent it.
type Upload struct {
	Name    string
	Content []byte
}

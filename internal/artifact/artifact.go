// Package artifact holds Parley's artifact domain: the documents a user or
// the assistant writes (text, code, spreadsheets as CSV), versioned and
// restorable. It declares the Store it needs (store.go), which
// internal/store implements; it knows nothing of protobuf or SQL. Service
// applies the rules; Tools offers create_artifact and update_artifact to
// the model during a chat answer (tools.go).
package artifact

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Limits on what a client (or the model) may send.
const (
	MaxTitleRunes     = 200
	MaxContentBytes   = 1 << 20
	MaxLanguageBytes  = 32
	MaxRequestIDBytes = 100
	DefaultPageSize   = 20
	MaxPageSize       = 100
)

// Kind says what an artifact's content is; it is fixed at creation.
type Kind string

// The kinds of artifacts.
const (
	KindText  Kind = "text"
	KindCode  Kind = "code"
	KindSheet Kind = "sheet"
)

// Kinds lists every kind, in the order the API documents them.
var Kinds = []Kind{KindText, KindCode, KindSheet}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	return k == KindText || k == KindCode || k == KindSheet
}

// Author says who wrote a version.
type Author string

// The authors of versions.
const (
	AuthorUser      Author = "user"
	AuthorAssistant Author = "assistant"
)

// Artifact is a document owned by one user, as of its latest version.
type Artifact struct {
	ID             uuid.UUID
	UserID         uuid.UUID
	Title          string
	Kind           Kind
	Language       string
	ConversationID uuid.UUID // uuid.Nil when none, or once it is deleted
	MessageID      uuid.UUID // uuid.Nil when none, or once it is deleted
	LatestVersion  int
	CreateTime     time.Time
	UpdateTime     time.Time
}

// Version is one version of an artifact, kept whole.
type Version struct {
	ArtifactID     uuid.UUID
	Number         int
	Title          string
	Content        string // empty in lists
	ContentBytes   int
	Author         Author
	ConversationID uuid.UUID
	MessageID      uuid.UUID
	CreateTime     time.Time
}

// NewArtifact is an artifact to create.
type NewArtifact struct {
	Title    string
	Kind     Kind
	Language string
	Content  string
	// ConversationID and MessageID link the artifact to where it came
	// from; uuid.Nil for none. A message needs its conversation.
	ConversationID uuid.UUID
	MessageID      uuid.UUID
	// RequestID makes the create idempotent when non-empty.
	RequestID string
	Author    Author
}

// Edit is a new version of an artifact.
type Edit struct {
	ArtifactID uuid.UUID
	// BaseVersion is the version the writer last saw: the edit is saved
	// only if it is still the latest. 0 writes over whatever is latest
	// (the model's edits, which never see versions).
	BaseVersion int
	Title       *string // nil keeps the current title
	Content     string
	Author      Author
	// ConversationID and MessageID say where the version was written.
	ConversationID uuid.UUID
	MessageID      uuid.UUID
}

// Filter narrows ListArtifacts; zero fields match everything.
type Filter struct {
	ConversationID uuid.UUID
	Kind           Kind
}

// Cursor is a keyset position in ListArtifacts: the update time and id of
// the last artifact of a page.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// Conflict is the error a write that names a stale base version returns:
// apperr Aborted, saying what to do.
func Conflict(base, latest int) error {
	return apperr.New(apperr.Aborted,
		"the artifact is at version %d, not base_version %d: someone saved a newer version; get it, reapply your change and send base_version %d",
		latest, base, latest)
}

// validLanguage reports whether language is one or more letters, digits
// and +#._- (what `^[A-Za-z0-9+#._-]+$` matches, without a regexp compiled
// at every start).
func validLanguage(language string) bool {
	if language == "" {
		return false
	}
	for i := 0; i < len(language); i++ {
		switch c := language[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("+#._-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkTitle validates a title (required).
func checkTitle(title string) error {
	if !utf8.ValidString(title) {
		return apperr.InvalidField("title", "must be valid UTF-8")
	}
	if title == "" {
		return apperr.InvalidField("title", "is required")
	}
	if n := utf8.RuneCountInString(title); n > MaxTitleRunes {
		return apperr.InvalidField("title", "must be at most %d characters, got %d", MaxTitleRunes, n)
	}
	return nil
}

// checkContent validates content for an artifact of kind.
func checkContent(kind Kind, content string) error {
	if len(content) > MaxContentBytes {
		return apperr.InvalidField("content", "must be at most %d bytes (1 MiB), got %d", MaxContentBytes, len(content))
	}
	if !utf8.ValidString(content) {
		return apperr.InvalidField("content", "must be valid UTF-8")
	}
	if kind == KindSheet {
		if err := checkCSV(content); err != nil {
			return apperr.InvalidField("content", "a sheet must be CSV (RFC 4180, every record with as many fields as the first): %v", err)
		}
	}
	return nil
}

// checkCSV parses content as encoding/csv does by default: every record
// with as many fields as the first, quotes only around whole fields.
func checkCSV(content string) error {
	r := csv.NewReader(bytes.NewReader([]byte(content)))
	r.ReuseRecord = true
	for {
		_, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
			}
			return err
		}
	}
}

// checkKind validates a kind and the language that goes with it.
func checkKind(kind Kind, language string) error {
	if kind == "" {
		return apperr.InvalidField("kind", "is required: one of text, code, sheet")
	}
	if !kind.Valid() {
		return apperr.InvalidField("kind", "must be one of text, code, sheet, got %q", truncate(string(kind), 32))
	}
	if language == "" {
		return nil
	}
	if kind != KindCode {
		return apperr.InvalidField("language", "is for code artifacts only; leave it empty for a %s artifact", kind)
	}
	if len(language) > MaxLanguageBytes || !validLanguage(language) {
		return apperr.InvalidField("language", "must be at most %d letters, digits and +#._- (such as go, python, c++), got %q", MaxLanguageBytes, truncate(language, 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// Package search holds Parley's search domain: full-text search over
// everything a user said or made (their messages and their artifacts),
// ranked, highlighted and paged. It declares the Store it needs, which
// internal/store implements on PostgreSQL's text search; it knows nothing
// of protobuf or SQL.
package search

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/pagetoken"
)

// Limits on a search request.
const (
	// MaxQueryRunes bounds a query: what people type in a search box, with
	// room to spare, and a bound on the work of parsing it.
	MaxQueryRunes = 256
	// DefaultPageSize and MaxPageSize are smaller than other lists'
	// because every result costs a snippet, the costly part of a search.
	DefaultPageSize = 20
	MaxPageSize     = 50
)

// Configs are the text search configurations a Service may use: simple
// (lower-cased words, so any language works) and english (stemming and
// stop words). The database has one vector column and index per entry
// (migration 00006), so adding one is a migration.
var Configs = []string{"simple", "english"}

// Kind says what a result is.
type Kind string

// The kinds of results.
const (
	KindMessage  Kind = "message"
	KindArtifact Kind = "artifact"
)

// Request is a search as a client asks for it.
type Request struct {
	Query string
	// Kinds to return; empty returns every kind.
	Kinds []Kind
	// ConversationID, when set, keeps results from that conversation.
	ConversationID uuid.UUID
	PageSize       int
	PageToken      string
}

// Query is a validated search, as the Store runs it.
type Query struct {
	Text           string
	Config         string // one of Configs
	Messages       bool   // search messages
	Artifacts      bool   // search artifacts
	ConversationID uuid.UUID
	After          *Cursor // nil for the first page
	Limit          int
}

// Cursor is a keyset position: the rank and id of the last result of a
// page. Ranks are exact float32 values the database computed, so the next
// page starts exactly after the last result.
type Cursor struct {
	Rank float32
	ID   uuid.UUID
}

// Result is one matching message or artifact.
type Result struct {
	Kind Kind
	// ID is the message's or the artifact's.
	ID uuid.UUID
	// ConversationID is the message's conversation, or the one the artifact
	// was created in (uuid.Nil when none).
	ConversationID uuid.UUID
	// Title is the conversation's title for a message, the artifact's own
	// for an artifact.
	Title string
	// Snippet is HTML: escaped text with each match in <mark></mark>.
	Snippet string
	Rank    float32
	// Time is when the message was written or the artifact last updated.
	Time time.Time
}

// Store runs searches.
type Store interface {
	// Search returns up to q.Limit of the user's results below q.After, best
	// first (rank, then id, descending). It never returns another user's
	// rows, and returns none for a query that parses to no word.
	Search(ctx context.Context, userID uuid.UUID, q Query) ([]Result, error)
}

// Service applies the search rules on top of a Store.
type Service struct {
	store  Store
	config string
}

// NewService returns a Service that searches with the text search
// configuration config, one of Configs.
func NewService(store Store, config string) (*Service, error) {
	if !slices.Contains(Configs, config) {
		return nil, fmt.Errorf("search: unknown text search configuration %q (want one of %s)", config, strings.Join(Configs, ", "))
	}
	return &Service{store: store, config: config}, nil
}

// Search returns a page of the user's results, best first, and the next
// page's token ("" on the last). A query with no word answers an empty
// page. It returns apperr Invalid naming the field for a query that is too
// long, an unknown kind, or a bad page size or token.
func (s *Service) Search(ctx context.Context, userID uuid.UUID, r Request) ([]Result, string, error) {
	if n := utf8.RuneCountInString(r.Query); n > MaxQueryRunes {
		return nil, "", apperr.InvalidField("query", "must be at most %d characters, got %d", MaxQueryRunes, n)
	}
	// PostgreSQL text holds neither (FuzzSearchQuery found both reaching it).
	if !utf8.ValidString(r.Query) {
		return nil, "", apperr.InvalidField("query", "must be valid UTF-8")
	}
	if strings.ContainsRune(r.Query, 0) {
		return nil, "", apperr.InvalidField("query", "must not contain NUL characters (U+0000)")
	}
	q := Query{Text: r.Query, Config: s.config, ConversationID: r.ConversationID}
	for _, k := range r.Kinds {
		switch k {
		case KindMessage:
			q.Messages = true
		case KindArtifact:
			q.Artifacts = true
		default:
			return nil, "", apperr.InvalidField("kinds", "must list message or artifact (or be empty for both), got %q", k)
		}
	}
	if len(r.Kinds) == 0 {
		q.Messages, q.Artifacts = true, true
	}
	switch size := r.PageSize; {
	case size == 0:
		q.Limit = DefaultPageSize
	case size < 0 || size > MaxPageSize:
		return nil, "", apperr.InvalidField("page_size", "must be between 1 and %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, size)
	default:
		q.Limit = size
	}
	scope := tokenScope(userID, q)
	raw, err := pagetoken.Decode("search", scope, r.PageToken, 20)
	if err != nil {
		return nil, "", err
	}
	if raw != nil {
		q.After = &Cursor{Rank: math.Float32frombits(binary.BigEndian.Uint32(raw[:4]))}
		copy(q.After.ID[:], raw[4:])
	}
	if strings.TrimSpace(q.Text) == "" {
		// Nothing to find: spare the database the round trip.
		return nil, "", nil
	}
	limit := q.Limit
	q.Limit++
	results, err := s.store.Search(ctx, userID, q)
	if err != nil {
		return nil, "", err
	}
	if len(results) <= limit {
		return results, "", nil
	}
	results = results[:limit]
	last := results[limit-1]
	cursor := binary.BigEndian.AppendUint32(nil, math.Float32bits(last.Rank))
	return results, pagetoken.Encode("search", scope, append(cursor, last.ID[:]...)), nil
}

// tokenScope binds a page token to everything that decides the order and
// membership of the results: the user, the configuration, the query and
// the filters (not the page size, which may change between pages).
func tokenScope(userID uuid.UUID, q Query) []byte {
	h := sha256.New()
	h.Write(userID[:])
	h.Write(q.ConversationID[:])
	fmt.Fprintf(h, "%s\x00%t\x00%t\x00%s", q.Config, q.Messages, q.Artifacts, q.Text)
	return h.Sum(nil)
}

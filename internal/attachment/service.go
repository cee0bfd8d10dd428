package attachment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/clock"
)

// Store reads attachments from the database; internal/store implements it
// (attachments are saved with their message, by chat's GenerationStore).
// Every method takes the owner's user id and treats other users' rows as
// absent.
type Store interface {
	// GetAttachment returns one of the user's attachments, with its
	// content unless the content is in object storage; apperr NotFound
	// when absent.
	GetAttachment(ctx context.Context, userID, attachmentID uuid.UUID) (Attachment, error)
	// MessageAttachments returns a message's attachments in the order they
	// were sent, with their content unless it is in object storage.
	MessageAttachments(ctx context.Context, userID, messageID uuid.UUID) ([]Attachment, error)
}

// Blobs is S3-compatible object storage; internal/objstore implements it.
type Blobs interface {
	// Put stores an object.
	Put(ctx context.Context, key, contentType string, content []byte) error
	// Get reads an object.
	Get(ctx context.Context, key string) ([]byte, error)
	// DeletePrefix deletes every object whose key starts with prefix.
	DeletePrefix(ctx context.Context, prefix string) error
	// SignGet returns a URL that reads the object with a plain GET until
	// ttl has passed.
	SignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// DefaultURLTTL is how long a signed URL from GetAttachment works.
const DefaultURLTTL = 5 * time.Minute

// Config is what a Service needs.
type Config struct {
	Limits Limits
	// Blobs keeps attachment content in object storage; nil keeps it in
	// the database.
	Blobs Blobs
	// URLTTL is how long signed URLs work (DefaultURLTTL when 0).
	URLTTL time.Duration
	Clock  clock.Clock
	Log    *slog.Logger
}

// Service applies the attachment rules: checks uploads, keeps their
// content where the deployment says, and gives it back to its owner only.
type Service struct {
	store Store
	cfg   Config
}

// NewService returns a Service over store.
func NewService(store Store, cfg Config) *Service {
	if cfg.URLTTL <= 0 {
		cfg.URLTTL = DefaultURLTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, cfg: cfg}
}

// Check checks uploads against the configured limits (see the package
// function Check).
func (s *Service) Check(uploads []Upload) ([]Attachment, error) {
	return Check(s.cfg.Limits, uploads, s.cfg.Clock.Now().UTC().Truncate(time.Microsecond))
}

// conversationPrefix is where a conversation's objects live, so that
// deleting it deletes them all, even one uploaded while it was deleted.
func conversationPrefix(userID, conversationID uuid.UUID) string {
	return userPrefix(userID) + "conversations/" + conversationID.String() + "/"
}

func userPrefix(userID uuid.UUID) string { return "users/" + userID.String() + "/" }

// Stash puts the content of attachments into object storage, when the
// deployment uses it, before their message is saved, and sets their
// ObjectKey (their Content stays, for the prompt). An upload whose message
// is then not saved is removed by Discard.
func (s *Service) Stash(ctx context.Context, userID, conversationID uuid.UUID, atts []Attachment) error {
	if s.cfg.Blobs == nil {
		return nil
	}
	for i := range atts {
		key := conversationPrefix(userID, conversationID) + atts[i].ID.String()
		if err := s.cfg.Blobs.Put(ctx, key, atts[i].ContentType, atts[i].Content); err != nil {
			s.Discard(ctx, userID, conversationID, atts[:i])
			return apperr.Wrap(err, apperr.Unavailable, "attachment storage failed; send the message again")
		}
		atts[i].ObjectKey = key
	}
	return nil
}

// Discard deletes the objects Stash stored for a message that was not
// saved. Failures are logged: an object left behind is deleted with its
// conversation.
func (s *Service) Discard(ctx context.Context, userID, conversationID uuid.UUID, atts []Attachment) {
	if s.cfg.Blobs == nil || len(atts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, a := range atts {
		if a.ObjectKey == "" {
			continue
		}
		if err := s.cfg.Blobs.DeletePrefix(ctx, a.ObjectKey); err != nil {
			s.cfg.Log.WarnContext(ctx, "attachment object not deleted", slog.String("conversation_id", conversationID.String()), slog.Any("error", err))
		}
	}
}

// Contents returns a message's attachments with their content, reading
// object storage where the content lives there.
func (s *Service) Contents(ctx context.Context, userID, messageID uuid.UUID) ([]Attachment, error) {
	atts, err := s.store.MessageAttachments(ctx, userID, messageID)
	if err != nil {
		return nil, err
	}
	for i := range atts {
		if err := s.fill(ctx, &atts[i]); err != nil {
			return nil, err
		}
	}
	return atts, nil
}

func (s *Service) fill(ctx context.Context, a *Attachment) error {
	if a.ObjectKey == "" || a.Content != nil {
		return nil
	}
	if s.cfg.Blobs == nil {
		return apperr.New(apperr.Unavailable, "attachment %s is in object storage, which this server is not configured with", a.ID)
	}
	b, err := s.cfg.Blobs.Get(ctx, a.ObjectKey)
	if err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "attachment storage failed")
	}
	a.Content = b
	return nil
}

// Download is an attachment with its content, or a signed URL to it.
type Download struct {
	Attachment
	URL           string
	URLExpireTime time.Time
}

// Get returns one of the user's attachments with its content (from the
// database) or a URL signed for Config.URLTTL (from object storage). It
// returns apperr NotFound for an attachment that is not the user's.
func (s *Service) Get(ctx context.Context, userID, attachmentID uuid.UUID) (Download, error) {
	a, err := s.store.GetAttachment(ctx, userID, attachmentID)
	if err != nil {
		return Download{}, err
	}
	if a.ObjectKey == "" {
		return Download{Attachment: a}, nil
	}
	if s.cfg.Blobs == nil {
		return Download{}, fmt.Errorf("attachment %s: %w", a.ID, errNoBlobs)
	}
	now := s.cfg.Clock.Now()
	url, err := s.cfg.Blobs.SignGet(ctx, a.ObjectKey, s.cfg.URLTTL)
	if err != nil {
		return Download{}, fmt.Errorf("sign attachment %s: %w", a.ID, err)
	}
	return Download{Attachment: a, URL: url, URLExpireTime: now.Add(s.cfg.URLTTL).UTC()}, nil
}

var errNoBlobs = errors.New("content in object storage, none configured")

// ConversationDeleted deletes the objects of a deleted conversation's
// attachments (their rows went with it).
func (s *Service) ConversationDeleted(ctx context.Context, userID, conversationID uuid.UUID) error {
	if s.cfg.Blobs == nil {
		return nil
	}
	return s.deleteObjects(ctx, conversationPrefix(userID, conversationID), "the conversation is deleted, but its files could not all be removed from storage yet; DeleteMe removes them")
}

// objectDeleteTimeout bounds the deletion of a prefix's objects, which
// runs after the rows' commit and outlives the client's request.
const objectDeleteTimeout = 30 * time.Second

// deleteObjects deletes every object under prefix within
// objectDeleteTimeout, even if ctx's caller has left. A failure is an
// Unavailable error saying what, as the rows are already gone.
func (s *Service) deleteObjects(ctx context.Context, prefix, failure string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), objectDeleteTimeout)
	defer cancel()
	if err := s.cfg.Blobs.DeletePrefix(ctx, prefix); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "%s", failure)
	}
	return nil
}

// UserDeleted deletes the objects of every attachment of a deleted user.
func (s *Service) UserDeleted(ctx context.Context, userID uuid.UUID) error {
	if s.cfg.Blobs == nil {
		return nil
	}
	return s.deleteObjects(ctx, userPrefix(userID), "the account is deleted, but its files could not all be removed from storage yet; call DeleteMe again to remove them")
}

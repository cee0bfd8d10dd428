package chat

import (
	"context"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Service applies the conversation rules on top of a Store.
type Service struct {
	store Store
	// validModel reports whether a model name may be used; nil accepts any.
	validModel func(string) bool
	// answers ends the answers of deleted conversations; may be nil.
	answers AnswerEnder
	// attachments deletes the stored objects of deleted conversations; may be nil.
	attachments AttachmentDeleter
}

// AnswerEnder ends answers wherever they run; the Generator is one.
type AnswerEnder interface {
	// EndDeleted stops the generations whose answers were deleted.
	EndDeleted(ctx context.Context, generationIDs []uuid.UUID)
}

// NewService returns a Service on store. validModel, when non-nil, rejects
// model names the server does not offer; answers, when non-nil, is told to
// stop the answers of a deleted conversation.
func NewService(store Store, validModel func(string) bool, answers AnswerEnder) *Service {
	return &Service{store: store, validModel: validModel, answers: answers}
}

// WithAttachments makes DeleteConversation delete the objects of the
// conversation's attachments too; it returns s.
func (s *Service) WithAttachments(a AttachmentDeleter) *Service {
	s.attachments = a
	return s
}

func (s *Service) checkSettings(title, systemPrompt, model *string) error {
	if title != nil && utf8.RuneCountInString(*title) > MaxTitleRunes {
		return apperr.InvalidField("title", "must be at most %d characters, got %d", MaxTitleRunes, utf8.RuneCountInString(*title))
	}
	if title != nil && !utf8.ValidString(*title) {
		return apperr.InvalidField("title", "must be valid UTF-8")
	}
	if systemPrompt != nil && len(*systemPrompt) > MaxSystemPromptBytes {
		return apperr.InvalidField("system_prompt", "must be at most %d bytes, got %d", MaxSystemPromptBytes, len(*systemPrompt))
	}
	if model != nil && *model != "" {
		if len(*model) > MaxModelBytes || (s.validModel != nil && !s.validModel(*model)) {
			return apperr.InvalidField("model", "%q is not a model this server offers", *model)
		}
	}
	return nil
}

// CreateConversation validates and creates a conversation. It returns
// apperr Invalid for bad settings.
func (s *Service) CreateConversation(ctx context.Context, userID uuid.UUID, c NewConversation) (Conversation, error) {
	if err := s.checkSettings(&c.Title, &c.SystemPrompt, &c.Model); err != nil {
		return Conversation{}, err
	}
	if len(c.RequestID) > MaxRequestIDBytes {
		return Conversation{}, apperr.InvalidField("request_id", "must be at most %d bytes", MaxRequestIDBytes)
	}
	return s.store.CreateConversation(ctx, userID, c)
}

// GetConversation returns apperr NotFound unless the user owns the conversation.
func (s *Service) GetConversation(ctx context.Context, userID, conversationID uuid.UUID) (Conversation, error) {
	return s.store.GetConversation(ctx, userID, conversationID)
}

// ListConversations returns a page of the user's conversations, newest
// first, and the token of the next page ("" on the last). It returns apperr
// Invalid for a bad page size or token.
func (s *Service) ListConversations(ctx context.Context, userID uuid.UUID, pageSize int, pageToken string) ([]Conversation, string, error) {
	p, err := page("conversations", userID, pageSize, pageToken)
	if err != nil {
		return nil, "", err
	}
	items, err := s.store.ListConversations(ctx, userID, p.After, p.Size+1)
	if err != nil {
		return nil, "", err
	}
	items, token := trimPage(items, p.Size, "conversations", userID, func(c Conversation) Cursor {
		return Cursor{Time: c.UpdateTime, ID: c.ID}
	})
	return items, token, nil
}

// UpdateConversation applies the non-nil fields of p. It returns apperr
// Invalid for bad settings and NotFound unless the user owns the conversation.
func (s *Service) UpdateConversation(ctx context.Context, userID, conversationID uuid.UUID, p ConversationPatch) (Conversation, error) {
	if err := s.checkSettings(p.Title, p.SystemPrompt, p.Model); err != nil {
		return Conversation{}, err
	}
	return s.store.UpdateConversation(ctx, userID, conversationID, p)
}

// DeleteConversation removes a conversation and its messages, and stops an
// answer still being written in it (what it held against the user's quota
// and concurrency cap is released with the delete). It returns apperr
// NotFound unless the user owns the conversation.
func (s *Service) DeleteConversation(ctx context.Context, userID, conversationID uuid.UUID) error {
	streaming, err := s.store.DeleteConversation(ctx, userID, conversationID)
	if err != nil {
		return err
	}
	if len(streaming) > 0 && s.answers != nil {
		s.answers.EndDeleted(ctx, streaming)
	}
	if s.attachments != nil {
		// The rows are gone with the conversation; their objects are
		// deleted even if the client leaves now.
		return s.attachments.ConversationDeleted(ctx, userID, conversationID)
	}
	return nil
}

// ListMessages returns a page of the messages of a conversation's active
// branch (or of the branch ending at leafID), root first, and the next
// page's token. It returns apperr NotFound unless the user owns the
// conversation, Invalid for a bad page size or token.
func (s *Service) ListMessages(ctx context.Context, userID, conversationID, leafID uuid.UUID, pageSize int, pageToken string) ([]Message, string, error) {
	scope := conversationID
	if leafID != uuid.Nil {
		scope = leafID // a token of one branch does not page another
	}
	p, err := page("messages", scope, pageSize, pageToken)
	if err != nil {
		return nil, "", err
	}
	items, err := s.store.ListMessages(ctx, userID, conversationID, leafID, p.After, p.Size+1)
	if err != nil {
		return nil, "", err
	}
	items, token := trimPage(items, p.Size, "messages", scope, func(m Message) Cursor {
		return Cursor{Time: m.CreateTime, ID: m.ID}
	})
	return items, token, nil
}

// maxSelectedBranch bounds the branch SelectBranch returns.
const maxSelectedBranch = 1000

// SelectBranch makes the branch through messageID the active one and
// returns it, root first. It returns apperr NotFound unless the message is
// in the user's conversation.
func (s *Service) SelectBranch(ctx context.Context, userID, conversationID, messageID uuid.UUID) ([]Message, error) {
	if err := s.store.SelectBranch(ctx, userID, conversationID, messageID); err != nil {
		return nil, err
	}
	return s.store.ListMessages(ctx, userID, conversationID, uuid.Nil, nil, maxSelectedBranch)
}

package chat

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/attachment"
)

// Store persists conversations and messages. Every method takes the owner's
// user id and treats rows of other users as absent.
type Store interface {
	// CreateConversation inserts a conversation, or returns the one created
	// earlier with the same non-empty RequestID.
	CreateConversation(ctx context.Context, userID uuid.UUID, c NewConversation) (Conversation, error)
	// GetConversation returns apperr NotFound when absent.
	GetConversation(ctx context.Context, userID, conversationID uuid.UUID) (Conversation, error)
	// ListConversations returns up to limit conversations after the cursor,
	// newest update first.
	ListConversations(ctx context.Context, userID uuid.UUID, after *Cursor, limit int) ([]Conversation, error)
	// UpdateConversation returns apperr NotFound when absent.
	UpdateConversation(ctx context.Context, userID, conversationID uuid.UUID, p ConversationPatch) (Conversation, error)
	// DeleteConversation deletes a conversation with its messages; answers
	// still streaming in it release their reservation and slot, charged
	// for the text saved so far. It returns their generation ids, and
	// apperr NotFound when the conversation is absent.
	DeleteConversation(ctx context.Context, userID, conversationID uuid.UUID) ([]uuid.UUID, error)
	// ListMessages returns up to limit messages of the branch ending at
	// leafID (the active branch when uuid.Nil) after the cursor, root
	// first, with their SiblingIDs; apperr NotFound when the conversation
	// (or the leaf) is absent. User messages come with their Attachments
	// (without content).
	ListMessages(ctx context.Context, userID, conversationID, leafID uuid.UUID, after *Cursor, limit int) ([]Message, error)
	// SelectBranch makes the newest leaf below messageID the active one;
	// apperr NotFound when the message is not in the user's conversation.
	SelectBranch(ctx context.Context, userID, conversationID, messageID uuid.UUID) error
}

// GenerationStore persists exchanges and answers. Every method that takes a
// user id treats other users' rows as absent (apperr NotFound).
type GenerationStore interface {
	// LoadContext returns the conversation's settings and the branch ending
	// at leafID (the active leaf when uuid.Nil), root first; the walk up the
	// branch stops after about maxBytes characters (the leaf always comes).
	// The branch is empty when leafID is not in the conversation.
	LoadContext(ctx context.Context, userID, conversationID, leafID uuid.UUID, maxBytes int) (ExchangeContext, error)
	// InsertExchange saves the user message (unless x.UserMessageID is Nil)
	// with its attachments, the streaming assistant message and the new
	// active leaf, atomically,
	// and returns both messages (the user message is nil when none was
	// saved). It returns apperr Conflict when x.ClientMessageID was used
	// before, and ErrQuotaExceeded, ErrTooManyGenerations or
	// ErrConversationBusy when a limit refuses the exchange.
	InsertExchange(ctx context.Context, userID uuid.UUID, x NewExchange) (*Message, Message, error)
	// FindExchange returns the exchange saved under clientMessageID: the
	// user message of a send or an edit and its first answer, or the
	// answer of a regenerate and its user message (apperr NotFound).
	FindExchange(ctx context.Context, userID, conversationID uuid.UUID, clientMessageID string) (Message, Message, error)
	// GetMessage returns one of the user's messages (apperr NotFound).
	GetMessage(ctx context.Context, userID, messageID uuid.UUID) (Message, error)
	// GetMessageByGeneration returns the answer a generation writes (apperr NotFound).
	GetMessageByGeneration(ctx context.Context, userID, generationID uuid.UUID) (Message, error)
	// CheckpointMessages saves the answers so far while they stream, all in
	// one write, and returns the ids still streaming: the others were ended
	// elsewhere (stopped by another instance, or deleted).
	CheckpointMessages(ctx context.Context, checkpoints []Checkpoint) ([]uuid.UUID, error)
	// FinishMessage ends a streaming answer, settles its usage and frees
	// its concurrency slot; apperr NotFound if it already ended.
	FinishMessage(ctx context.Context, messageID uuid.UUID, o Outcome) (Message, error)
	// SaveTitle sets a generated title unless the conversation has one (or
	// title is empty), and charges the tokens writing it cost to the
	// user's quota period holding at, in one write; it reports whether the
	// title was set.
	SaveTitle(ctx context.Context, userID, conversationID uuid.UUID, title string, at time.Time, tokens int64) (bool, error)
	// InterruptStale marks answers still streaming whose last checkpoint
	// (or start) is before the cutoff as interrupted (their instance
	// died), releasing what they hold, and returns how many it marked.
	InterruptStale(ctx context.Context, before time.Time) (int64, error)
}

// ExchangeContext is what a generation needs to build its prompt.
type ExchangeContext struct {
	ConversationID uuid.UUID
	Title          string
	SystemPrompt   string
	Model          string
	Branch         []Message // root first; Role, Content, Status, IDs only
}

// NewExchange is an exchange to save before the model is asked.
type NewExchange struct {
	ConversationID     uuid.UUID
	ParentID           uuid.UUID // parent of the user message (or of the answer, when regenerating)
	UserMessageID      uuid.UUID // uuid.Nil: no new user message (regenerate)
	Content            string
	ClientMessageID    string
	AssistantMessageID uuid.UUID
	GenerationID       uuid.UUID
	Model              string
	CreateTime         time.Time
	// ReserveTokens is held against the monthly quota until the answer
	// ends; QuotaTokens is the user's monthly quota and MaxActive the
	// answers they may have streaming at once.
	ReserveTokens int64
	QuotaTokens   int64
	MaxActive     int
	// PromptTokens is the prompt's estimate, saved with the answer until
	// the provider's count replaces it, so that an answer that never
	// finishes (deleted, or its instance died) is charged for its prompt.
	PromptTokens int64
	// Attachments are the user message's files, saved with it: with their
	// content, or their ObjectKey when the content was put in object
	// storage.
	Attachments []attachment.Attachment
}

// Errors InsertExchange returns when a limit, not the input, refuses the
// exchange.
var (
	ErrQuotaExceeded      = errors.New("monthly token quota exceeded")
	ErrTooManyGenerations = errors.New("too many concurrent generations")
	ErrConversationBusy   = errors.New("an answer is streaming in the conversation")
)

// Checkpoint is the text an answer has so far.
type Checkpoint struct {
	MessageID uuid.UUID
	Content   string
	// Unchanged asks only whether the answer still streams: its text is
	// what the last checkpoint saved, and Content is not written.
	Unchanged bool
}

// Outcome is how an answer ended: what FinishMessage saves.
type Outcome struct {
	Content      string
	Status       Status
	Model        string
	Usage        Usage
	FinishReason string
	ToolRounds   []ToolRound
	// Cached: the answer came from the response cache.
	Cached bool
}

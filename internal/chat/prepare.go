package chat

import (
	"context"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/attachment"
)

// Stage 1 of an answer: Send, Edit and Regenerate each check their input,
// then prepare loads the branch being answered and picks the model, and
// start (start.go) saves the exchange and launches the generation.

// SendInput is a new user message to answer.
type SendInput struct {
	ConversationID  uuid.UUID
	Content         string
	Model           string
	ClientMessageID string
	ParentID        uuid.UUID // uuid.Nil continues the active branch
	// Attachments are files sent with the message (checked by prepare).
	Attachments []attachment.Upload
}

// errBusy refuses a second answer in a conversation while one streams.
var errBusy = apperr.New(apperr.FailedPrecondition, "an answer is still being written in this conversation: stop it (StopGeneration) or wait for it to end")

func checkContent(field, content string) error {
	if content == "" {
		return apperr.InvalidField(field, "must not be empty")
	}
	if len(content) > MaxContentBytes {
		return apperr.InvalidField(field, "must be at most %d bytes, got %d", MaxContentBytes, len(content))
	}
	if !utf8.ValidString(content) {
		return apperr.InvalidField(field, "must be valid UTF-8")
	}
	return nil
}

// Send saves the user message and starts its answer. A retry with the same
// ClientMessageID attaches to the first attempt's answer. It returns apperr
// Invalid for bad input, NotFound for a conversation or parent that is not
// the user's, FailedPrecondition while another answer streams in the
// conversation.
func (g *Generator) Send(ctx context.Context, userID uuid.UUID, in SendInput) (Stream, error) {
	if err := checkContent("content", in.Content); err != nil {
		return nil, err
	}
	if err := checkClientMessageID(in.ClientMessageID); err != nil {
		return nil, err
	}
	p, err := g.prepare(ctx, userID, turn{
		conversationID: in.ConversationID, leafID: in.ParentID,
		content: in.Content, clientMessageID: in.ClientMessageID, model: in.Model,
		uploads: in.Attachments,
	})
	if err != nil {
		return nil, err
	}
	branch := p.xc.Branch
	if in.ParentID != uuid.Nil {
		if len(branch) == 0 {
			return nil, apperr.New(apperr.NotFound, "parent message not found")
		}
		if branch[len(branch)-1].Role != RoleAssistant {
			return nil, apperr.InvalidField("parent_message_id", "must name an assistant message; to change a user message use EditMessage")
		}
	}
	if n := len(branch); n > 0 && branch[n-1].Status == StatusStreaming {
		if s, err := g.retried(ctx, userID, in.ConversationID, in.ClientMessageID); s != nil || err != nil {
			return s, err
		}
		return nil, errBusy
	}
	return g.startOrAttach(ctx, userID, p)
}

// RegenerateInput asks for a new answer beside an assistant message.
type RegenerateInput struct {
	MessageID       uuid.UUID
	Model           string
	ClientMessageID string // a retry with the same key attaches to the first attempt
}

// EditInput is a new version of a user message.
type EditInput struct {
	MessageID       uuid.UUID
	Content         string
	Model           string
	ClientMessageID string // a retry with the same key attaches to the first attempt
	// Attachments are the edited message's files; the original's are not
	// carried over.
	Attachments []attachment.Upload
}

func checkClientMessageID(id string) error {
	if len(id) > MaxRequestIDBytes {
		return apperr.InvalidField("client_message_id", "must be at most %d bytes", MaxRequestIDBytes)
	}
	return nil
}

// retried returns the stream of the first attempt of a request retried
// with the same client message id, or nil when there was none.
func (g *Generator) retried(ctx context.Context, userID, conversationID uuid.UUID, clientMessageID string) (Stream, error) {
	if clientMessageID == "" {
		return nil, nil
	}
	s, err := g.attach(ctx, userID, conversationID, clientMessageID)
	if apperr.IsNotFound(err) {
		return nil, nil
	}
	return s, err
}

// Regenerate writes a new answer beside an assistant message. It returns
// apperr NotFound for a message that is not the user's, Invalid for a
// message that is not an answer.
func (g *Generator) Regenerate(ctx context.Context, userID uuid.UUID, in RegenerateInput) (Stream, error) {
	if err := checkClientMessageID(in.ClientMessageID); err != nil {
		return nil, err
	}
	old, err := g.store.GetMessage(ctx, userID, in.MessageID)
	if err != nil {
		return nil, err
	}
	if s, err := g.retried(ctx, userID, old.ConversationID, in.ClientMessageID); s != nil || err != nil {
		return s, err
	}
	if old.Role != RoleAssistant {
		return nil, apperr.InvalidField("message_id", "must name an assistant message; to change a user message use EditMessage")
	}
	if old.ParentID == uuid.Nil {
		return nil, apperr.InvalidField("message_id", "has no user message to answer")
	}
	p, err := g.prepare(ctx, userID, turn{conversationID: old.ConversationID, leafID: old.ParentID, model: in.Model, clientMessageID: in.ClientMessageID})
	if err != nil {
		return nil, err
	}
	return g.startOrAttach(ctx, userID, p)
}

// startOrAttach starts p. When the exchange is refused and carries a
// client message id, the refusal may come from the first attempt of this
// very request (saved by a concurrent retry, or streaming while the retry
// names another parent): whatever the refusal (the id taken, the
// conversation busy, the slot or the quota held by that attempt), it then
// follows that attempt's answer instead.
func (g *Generator) startOrAttach(ctx context.Context, userID uuid.UUID, p prepared) (Stream, error) {
	s, err := g.start(ctx, userID, p)
	if id := p.exchange.ClientMessageID; id != "" && refusedByState(err) {
		if s, aerr := g.retried(ctx, userID, p.exchange.ConversationID, id); s != nil || aerr != nil {
			return s, aerr
		}
	}
	return s, err
}

// refusedByState reports whether start refused an exchange because of
// what is saved already, not because of the input.
func refusedByState(err error) bool {
	switch apperr.CodeOf(err) {
	case apperr.Conflict, apperr.FailedPrecondition, apperr.ResourceExhausted:
		return true
	}
	return false
}

// Edit saves a new version of a user message beside the original and
// answers it. It returns apperr NotFound for a message that is not the
// user's, Invalid for bad content or a message that is not the user's turn.
func (g *Generator) Edit(ctx context.Context, userID uuid.UUID, in EditInput) (Stream, error) {
	if err := checkContent("content", in.Content); err != nil {
		return nil, err
	}
	if err := checkClientMessageID(in.ClientMessageID); err != nil {
		return nil, err
	}
	old, err := g.store.GetMessage(ctx, userID, in.MessageID)
	if err != nil {
		return nil, err
	}
	if s, err := g.retried(ctx, userID, old.ConversationID, in.ClientMessageID); s != nil || err != nil {
		return s, err
	}
	if old.Role != RoleUser {
		return nil, apperr.InvalidField("message_id", "must name a user message; to rewrite an answer use RegenerateMessage")
	}
	p, err := g.prepare(ctx, userID, turn{
		conversationID: old.ConversationID, leafID: old.ParentID, startsConversation: old.ParentID == uuid.Nil,
		content: in.Content, model: in.Model, clientMessageID: in.ClientMessageID,
		uploads: in.Attachments,
	})
	if err != nil {
		return nil, err
	}
	return g.startOrAttach(ctx, userID, p)
}

// turn is what Send, Edit and Regenerate ask prepare for.
type turn struct {
	conversationID uuid.UUID
	// leafID ends the branch being answered (uuid.Nil: the active branch);
	// its last message becomes the parent of the new message.
	leafID uuid.UUID
	// startsConversation: the new user message has no parent (an edit of
	// the first message), so no branch comes before it.
	startsConversation bool
	// content is the new user message; "" regenerates an answer to the
	// branch's last message.
	content         string
	clientMessageID string
	model           string
	// uploads are the new user message's files.
	uploads []attachment.Upload
}

// prepared is an exchange ready to be saved, with what its generation
// needs afterwards.
type prepared struct {
	exchange NewExchange
	xc       ExchangeContext
	prompt   []PromptMessage
	provider Provider
}

// prepare loads the branch to answer (one round trip), resolves the model
// and builds the exchange and the prompt. It returns apperr NotFound for a
// conversation that is not the user's, Invalid for an unknown model, for
// attachments refused, or for images sent to a model that cannot read them.
func (g *Generator) prepare(ctx context.Context, userID uuid.UUID, t turn) (prepared, error) {
	xc, err := g.store.LoadContext(ctx, userID, t.conversationID, t.leafID, g.loadBytes())
	if err != nil {
		return prepared{}, err
	}
	if t.startsConversation {
		xc.Branch = nil
	}
	model, provider, err := g.models.resolve("model", t.model, xc.Model)
	if err != nil {
		return prepared{}, err
	}
	x := NewExchange{
		ConversationID:     t.conversationID,
		ClientMessageID:    t.clientMessageID,
		AssistantMessageID: uuid.New(),
		GenerationID:       uuid.New(),
		Model:              model,
	}
	if n := len(xc.Branch); n > 0 {
		x.ParentID = xc.Branch[n-1].ID
	}
	atts, err := g.turnAttachments(ctx, userID, t, xc.Branch, model)
	if err != nil {
		return prepared{}, err
	}
	history := xc.Branch
	if t.content != "" {
		x.UserMessageID, x.Content = uuid.New(), t.content
		history = append(history[:len(history):len(history)], Message{Role: RoleUser, Content: t.content})
		for i := range atts {
			atts[i].MessageID, atts[i].ConversationID = x.UserMessageID, t.conversationID
		}
		x.Attachments = atts
	}
	var images []PromptImage
	if len(atts) > 0 {
		// The turn answered (new, or regenerated) shows the model its
		// files; earlier turns show their text only.
		last := history[len(history)-1]
		last.Content, images = turnContent(last.Content, atts)
		if err := g.checkTurnBudget(last.Content, images); err != nil {
			return prepared{}, err
		}
		history = append(history[:len(history)-1:len(history)-1], last)
	}
	prompt := g.buildPrompt(xc, history)
	if len(images) > 0 {
		prompt[len(prompt)-1].Images = images
	}
	return prepared{exchange: x, xc: xc, prompt: prompt, provider: provider}, nil
}

// loadBytes is how much branch text (in characters) to load for a prompt:
// the token budget at the estimate's 4 characters a token.
func (g *Generator) loadBytes() int { return g.cfg.ContextTokens * 4 }

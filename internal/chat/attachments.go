package chat

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/attachment"
)

// Attachments checks and keeps the files sent with messages;
// attachment.Service is one.
type Attachments interface {
	// Check sniffs, decodes and caps uploads; apperr Invalid names the
	// attachment refused.
	Check(uploads []attachment.Upload) ([]attachment.Attachment, error)
	// Stash puts checked attachments' content where it is kept (object
	// storage, when configured) before their message is saved.
	Stash(ctx context.Context, userID, conversationID uuid.UUID, atts []attachment.Attachment) error
	// Discard removes what Stash put, when the message was not saved.
	Discard(ctx context.Context, userID, conversationID uuid.UUID, atts []attachment.Attachment)
	// Contents returns a saved message's attachments with their content.
	Contents(ctx context.Context, userID, messageID uuid.UUID) ([]attachment.Attachment, error)
}

// AttachmentDeleter deletes the stored objects of a deleted conversation's
// attachments; attachment.Service is one.
type AttachmentDeleter interface {
	ConversationDeleted(ctx context.Context, userID, conversationID uuid.UUID) error
}

var (
	_ Attachments       = (*attachment.Service)(nil)
	_ AttachmentDeleter = (*attachment.Service)(nil)
)

// ImageTokens is what one image is counted for in budgets and quota
// reservations: about what OpenAI bills for a detailed image of a
// photo's proportions (765 to 1105 tokens).
const ImageTokens = 1000

// turnAttachments returns the attachments of the user turn being
// answered: the checked uploads of a send or an edit, or, for a
// regeneration, those saved with the user message it answers. It refuses
// images when model cannot read them, with apperr Invalid.
func (g *Generator) turnAttachments(ctx context.Context, userID uuid.UUID, t turn, branch []Message, model string) ([]attachment.Attachment, error) {
	var atts []attachment.Attachment
	switch {
	case len(t.uploads) > 0 && g.cfg.Attachments == nil:
		return nil, apperr.InvalidField("attachments", "this server does not accept attachments")
	case len(t.uploads) > 0:
		checked, err := g.cfg.Attachments.Check(t.uploads)
		if err != nil {
			return nil, err
		}
		atts = checked
	case t.content == "" && g.cfg.Attachments != nil && len(branch) > 0 && branch[len(branch)-1].Role == RoleUser:
		saved, err := g.cfg.Attachments.Contents(ctx, userID, branch[len(branch)-1].ID)
		if err != nil {
			return nil, err
		}
		atts = saved
	}
	if slices.ContainsFunc(atts, func(a attachment.Attachment) bool { return a.Kind == attachment.KindImage }) &&
		!slices.Contains(g.cfg.VisionModels, model) {
		return nil, apperr.InvalidField("attachments", "model %q cannot read images; use a vision model (%s) or send no images",
			model, strings.Join(g.cfg.VisionModels, ", "))
	}
	return atts, nil
}

// turnContent is a user turn as the model sees it: the message's text,
// then each text file under its name, and the images beside.
func turnContent(content string, atts []attachment.Attachment) (string, []PromptImage) {
	if len(atts) == 0 {
		return content, nil
	}
	var b strings.Builder
	b.WriteString(content)
	var images []PromptImage
	for _, a := range atts {
		if a.Kind == attachment.KindImage {
			images = append(images, PromptImage{ContentType: a.ContentType, Data: a.Content})
			continue
		}
		b.WriteString("\n\n<file name=")
		b.WriteString(strconv.Quote(a.Name))
		b.WriteString(">\n")
		b.Write(a.Content)
		b.WriteString("\n</file>")
	}
	return b.String(), images
}

// checkTurnBudget refuses a turn whose files alone overflow the prompt
// budget: the newest turn is always sent whole, so it must fit.
func (g *Generator) checkTurnBudget(content string, images []PromptImage) error {
	need := EstimateTokens(content) + ImageTokens*len(images)
	if budget := g.cfg.ContextTokens - g.cfg.MaxOutputTokens; need > budget {
		return apperr.InvalidField("attachments", "the message and its files need about %d tokens; the model's context budget is %d", need, budget)
	}
	return nil
}

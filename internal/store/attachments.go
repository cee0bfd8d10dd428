package store

import (
	"context"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// GetAttachment implements attachment.Store.
func (s *Store) GetAttachment(ctx context.Context, userID, attachmentID uuid.UUID) (attachment.Attachment, error) {
	row, err := s.q.GetAttachment(ctx, sqlcgen.GetAttachmentParams{ID: attachmentID, UserID: userID})
	if err != nil {
		return attachment.Attachment{}, interpretError(err, "attachment")
	}
	return toAttachment(row), nil
}

// MessageAttachments implements attachment.Store.
func (s *Store) MessageAttachments(ctx context.Context, userID, messageID uuid.UUID) ([]attachment.Attachment, error) {
	rows, err := s.q.ListMessageAttachments(ctx, sqlcgen.ListMessageAttachmentsParams{MessageID: messageID, UserID: userID})
	if err != nil {
		return nil, interpretError(err, "attachments")
	}
	out := make([]attachment.Attachment, len(rows))
	for i, r := range rows {
		out[i] = toAttachment(r)
	}
	return out, nil
}

// withAttachments fills the Attachments (without content) of the user
// messages among msgs, in one query.
func (s *Store) withAttachments(ctx context.Context, userID uuid.UUID, msgs []chat.Message) error {
	var ids []uuid.UUID
	index := map[uuid.UUID]int{}
	for i, m := range msgs {
		if m.Role == chat.RoleUser {
			ids = append(ids, m.ID)
			index[m.ID] = i
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.q.ListAttachmentsOfMessages(ctx, sqlcgen.ListAttachmentsOfMessagesParams{MessageIds: ids, UserID: userID})
	if err != nil {
		return interpretError(err, "attachments")
	}
	for _, r := range rows {
		a := toAttachment(sqlcgen.ParleyAttachment{
			ID: r.ID, MessageID: r.MessageID, ConversationID: r.ConversationID, Name: r.Name, ContentType: r.ContentType,
			Kind: r.Kind, SizeBytes: r.SizeBytes, Width: r.Width, Height: r.Height, Sha256: r.Sha256, CreateTime: r.CreateTime,
		})
		i := index[r.MessageID]
		msgs[i].Attachments = append(msgs[i].Attachments, a)
	}
	return nil
}

// insertAttachments saves a new user message's attachments in tx: the
// content goes in the row unless it was put in object storage.
func insertAttachments(ctx context.Context, q *sqlcgen.Queries, userID uuid.UUID, atts []attachment.Attachment) error {
	rows := make([]sqlcgen.InsertAttachmentsParams, len(atts))
	for i, a := range atts {
		r := sqlcgen.InsertAttachmentsParams{
			ID: a.ID, MessageID: a.MessageID, ConversationID: a.ConversationID, UserID: userID, Position: int32(i),
			Name: a.Name, ContentType: a.ContentType, Kind: string(a.Kind), SizeBytes: a.SizeBytes,
			Width: int32(a.Width), Height: int32(a.Height), Sha256: a.SHA256, CreateTime: a.CreateTime,
		}
		if a.ObjectKey != "" {
			r.ObjectKey = &a.ObjectKey
		} else {
			r.Content = a.Content
		}
		rows[i] = r
	}
	_, err := q.InsertAttachments(ctx, rows)
	return err
}

func toAttachment(r sqlcgen.ParleyAttachment) attachment.Attachment {
	a := attachment.Attachment{
		ID: r.ID, MessageID: r.MessageID, ConversationID: r.ConversationID, Name: r.Name, ContentType: r.ContentType,
		Kind: attachment.Kind(r.Kind), SizeBytes: r.SizeBytes, Width: int(r.Width), Height: int(r.Height),
		SHA256: r.Sha256, CreateTime: r.CreateTime, Content: r.Content,
	}
	if r.ObjectKey != nil {
		a.ObjectKey = *r.ObjectKey
	}
	return a
}

// metadataOnly is atts without their content, as messages carry them.
func metadataOnly(atts []attachment.Attachment) []attachment.Attachment {
	if len(atts) == 0 {
		return nil
	}
	out := make([]attachment.Attachment, len(atts))
	for i, a := range atts {
		a.Content = nil
		out[i] = a
	}
	return out
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/attachment"
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

// attachmentsJSON decodes the attachments' metadata ListBranch gathers
// for one message (a JSON array, or NULL when it has none).
func attachmentsJSON(raw []byte, messageID, conversationID uuid.UUID) ([]attachment.Attachment, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var rows []struct {
		ID          uuid.UUID `json:"id"`
		Name        string    `json:"name"`
		ContentType string    `json:"content_type"`
		Kind        string    `json:"kind"`
		SizeBytes   int64     `json:"size_bytes"`
		Width       int32     `json:"width"`
		Height      int32     `json:"height"`
		Sha256      string    `json:"sha256"`
		CreateTime  time.Time `json:"create_time"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		return nil, fmt.Errorf("store: decode attachments: %w", err)
	}
	out := make([]attachment.Attachment, len(rows))
	for i, r := range rows {
		out[i] = toAttachment(sqlcgen.ParleyAttachment{
			ID: r.ID, MessageID: messageID, ConversationID: conversationID, Name: r.Name, ContentType: r.ContentType,
			Kind: r.Kind, SizeBytes: r.SizeBytes, Width: r.Width, Height: r.Height, Sha256: r.Sha256, CreateTime: r.CreateTime,
		})
	}
	return out, nil
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

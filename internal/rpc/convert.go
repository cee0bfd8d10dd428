package rpc

import (
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// parseID parses a UUID request field, naming the field when it is bad.
func parseID(field, value string) (uuid.UUID, error) {
	if value == "" {
		return uuid.Nil, apperr.InvalidField(field, "is required")
	}
	id, err := uuid.Parse(value)
	if err != nil || len(value) != 36 {
		return uuid.Nil, apperr.InvalidField(field, "must be a UUID such as 3f0e2f4e-8a51-4c4e-9d59-5a1f4d1f2c3b, got %q", truncate(value, 64))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func idString(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

func toProtoConversation(c chat.Conversation) *parleyv1.Conversation {
	return &parleyv1.Conversation{
		Id:           c.ID.String(),
		Title:        c.Title,
		SystemPrompt: c.SystemPrompt,
		Model:        c.Model,
		CreateTime:   timestamppb.New(c.CreateTime),
		UpdateTime:   timestamppb.New(c.UpdateTime),
	}
}

var roles = map[chat.Role]parleyv1.Role{
	chat.RoleUser:      parleyv1.Role_ROLE_USER,
	chat.RoleAssistant: parleyv1.Role_ROLE_ASSISTANT,
	chat.RoleSystem:    parleyv1.Role_ROLE_SYSTEM,
}

var statuses = map[chat.Status]parleyv1.MessageStatus{
	chat.StatusCompleted:   parleyv1.MessageStatus_MESSAGE_STATUS_COMPLETED,
	chat.StatusStreaming:   parleyv1.MessageStatus_MESSAGE_STATUS_STREAMING,
	chat.StatusStopped:     parleyv1.MessageStatus_MESSAGE_STATUS_STOPPED,
	chat.StatusFailed:      parleyv1.MessageStatus_MESSAGE_STATUS_FAILED,
	chat.StatusInterrupted: parleyv1.MessageStatus_MESSAGE_STATUS_INTERRUPTED,
}

func toProtoMessage(m chat.Message) *parleyv1.Message {
	pm := &parleyv1.Message{
		Id:             m.ID.String(),
		ConversationId: m.ConversationID.String(),
		ParentId:       idString(m.ParentID),
		Role:           roles[m.Role],
		Content:        m.Content,
		Status:         statuses[m.Status],
		Model:          m.Model,
		Usage:          &parleyv1.Usage{PromptTokens: m.Usage.PromptTokens, CompletionTokens: m.Usage.CompletionTokens},
		FinishReason:   m.FinishReason,
		CreateTime:     timestamppb.New(m.CreateTime),
		UpdateTime:     timestamppb.New(m.UpdateTime),
		GenerationId:   idString(m.GenerationID),
		Cached:         m.Cached,
		Rating:         toProtoRating(m.Rating),
	}
	if n := len(m.SiblingIDs); n > 0 {
		pm.SiblingCount = int32(n)
		pm.SiblingIds = make([]string, n)
		for i, id := range m.SiblingIDs {
			pm.SiblingIds[i] = id.String()
			if id == m.ID {
				pm.SiblingIndex = int32(i)
			}
		}
	}
	for round, r := range m.ToolRounds {
		for _, u := range r.Calls {
			pm.ToolUses = append(pm.ToolUses, &parleyv1.ToolUse{
				CallId: u.ID, Name: u.Name, Arguments: u.Arguments, Result: u.Result, IsError: u.IsError,
				Artifact: toProtoSavedArtifact(u.Artifact), Round: int32(round + 1),
			})
		}
	}
	for _, a := range m.Attachments {
		pm.Attachments = append(pm.Attachments, toProtoAttachment(a))
	}
	return pm
}

// toProtoSavedArtifact is nil for a call that saved no artifact.
func toProtoSavedArtifact(a *chat.ArtifactRef) *parleyv1.SavedArtifact {
	if a == nil {
		return nil
	}
	return &parleyv1.SavedArtifact{ArtifactId: a.ID.String(), Version: int32(a.Version), Title: a.Title, Kind: a.Kind}
}

var protoRatings = map[chat.RatingValue]parleyv1.Rating{
	chat.RatingUp:   parleyv1.Rating_RATING_UP,
	chat.RatingDown: parleyv1.Rating_RATING_DOWN,
}

// toProtoRating is nil for an unrated message.
func toProtoRating(r *chat.Rating) *parleyv1.MessageRating {
	if r == nil {
		return nil
	}
	return &parleyv1.MessageRating{Rating: protoRatings[r.Value], Text: r.Text, Tags: r.Tags, UpdateTime: timestamppb.New(r.UpdateTime)}
}

package rpc

import (
	"context"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// ChatHandler serves parley.v1.ChatService on top of chat.Service.
type ChatHandler struct {
	chat     *chat.Service
	gen      *chat.Generator
	feedback *chat.Feedback
}

var _ parleyv1connect.ChatServiceHandler = (*ChatHandler)(nil)

// NewChatHandler returns a handler for svc, gen and feedback.
func NewChatHandler(svc *chat.Service, gen *chat.Generator, feedback *chat.Feedback) *ChatHandler {
	return &ChatHandler{chat: svc, gen: gen, feedback: feedback}
}

// userID returns the authenticated caller. The auth interceptor guarantees
// one; its absence is a wiring bug, answered as unauthenticated.
func userID(ctx context.Context) (uuid.UUID, error) {
	id, ok := auth.UserID(ctx)
	if !ok {
		return uuid.Nil, apperr.New(apperr.Unauthenticated, "missing or invalid access token")
	}
	return id, nil
}

// CreateConversation implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) CreateConversation(ctx context.Context, req *connect.Request[parleyv1.CreateConversationRequest]) (*connect.Response[parleyv1.CreateConversationResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	c, err := h.chat.CreateConversation(ctx, uid, chat.NewConversation{
		Title:        req.Msg.GetTitle(),
		SystemPrompt: req.Msg.GetSystemPrompt(),
		Model:        req.Msg.GetModel(),
		RequestID:    req.Msg.GetRequestId(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.CreateConversationResponse{Conversation: toProtoConversation(c)}), nil
}

// ListConversations implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) ListConversations(ctx context.Context, req *connect.Request[parleyv1.ListConversationsRequest]) (*connect.Response[parleyv1.ListConversationsResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	items, next, err := h.chat.ListConversations(ctx, uid, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res := &parleyv1.ListConversationsResponse{NextPageToken: next, Conversations: make([]*parleyv1.Conversation, len(items))}
	for i, c := range items {
		res.Conversations[i] = toProtoConversation(c)
	}
	return connect.NewResponse(res), nil
}

// GetConversation implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) GetConversation(ctx context.Context, req *connect.Request[parleyv1.GetConversationRequest]) (*connect.Response[parleyv1.GetConversationResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	c, err := h.chat.GetConversation(ctx, uid, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.GetConversationResponse{Conversation: toProtoConversation(c)}), nil
}

// UpdateConversation implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) UpdateConversation(ctx context.Context, req *connect.Request[parleyv1.UpdateConversationRequest]) (*connect.Response[parleyv1.UpdateConversationResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	c, err := h.chat.UpdateConversation(ctx, uid, id, chat.ConversationPatch{
		Title:        req.Msg.Title,
		SystemPrompt: req.Msg.SystemPrompt,
		Model:        req.Msg.Model,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.UpdateConversationResponse{Conversation: toProtoConversation(c)}), nil
}

// DeleteConversation implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) DeleteConversation(ctx context.Context, req *connect.Request[parleyv1.DeleteConversationRequest]) (*connect.Response[parleyv1.DeleteConversationResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	if err := h.chat.DeleteConversation(ctx, uid, id); err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.DeleteConversationResponse{}), nil
}

// ListMessages implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) ListMessages(ctx context.Context, req *connect.Request[parleyv1.ListMessagesRequest]) (*connect.Response[parleyv1.ListMessagesResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	var leaf uuid.UUID
	if req.Msg.GetLeafMessageId() != "" {
		if leaf, err = parseID("leaf_message_id", req.Msg.GetLeafMessageId()); err != nil {
			return nil, err
		}
	}
	items, next, err := h.chat.ListMessages(ctx, uid, id, leaf, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res := &parleyv1.ListMessagesResponse{NextPageToken: next, Messages: make([]*parleyv1.Message, len(items))}
	for i, m := range items {
		res.Messages[i] = toProtoMessage(m)
	}
	return connect.NewResponse(res), nil
}

// SelectBranch implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) SelectBranch(ctx context.Context, req *connect.Request[parleyv1.SelectBranchRequest]) (*connect.Response[parleyv1.SelectBranchResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	msgID, err := parseID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return nil, err
	}
	items, err := h.chat.SelectBranch(ctx, uid, convID, msgID)
	if err != nil {
		return nil, err
	}
	res := &parleyv1.SelectBranchResponse{Messages: make([]*parleyv1.Message, len(items))}
	for i, m := range items {
		res.Messages[i] = toProtoMessage(m)
	}
	return connect.NewResponse(res), nil
}

// ratingValues maps the wire's ratings to the domain's; unspecified and
// unknown numbers are absent (and refused by chat.Feedback).
var ratingValues = map[parleyv1.Rating]chat.RatingValue{
	parleyv1.Rating_RATING_UP:   chat.RatingUp,
	parleyv1.Rating_RATING_DOWN: chat.RatingDown,
	parleyv1.Rating_RATING_NONE: chat.RatingNone,
}

// RateMessage implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) RateMessage(ctx context.Context, req *connect.Request[parleyv1.RateMessageRequest]) (*connect.Response[parleyv1.RateMessageResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return nil, err
	}
	value, ok := ratingValues[req.Msg.GetRating()]
	if !ok && req.Msg.GetRating() != parleyv1.Rating_RATING_UNSPECIFIED {
		return nil, apperr.InvalidField("rating", "%d is not a rating: use RATING_UP, RATING_DOWN or RATING_NONE", int32(req.Msg.GetRating()))
	}
	r, err := h.feedback.RateMessage(ctx, uid, id, chat.Rating{Value: value, Text: req.Msg.GetText(), Tags: req.Msg.GetTags()})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.RateMessageResponse{Rating: toProtoRating(r)}), nil
}

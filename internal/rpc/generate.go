package rpc

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// SendMessage implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) SendMessage(ctx context.Context, req *connect.Request[parleyv1.SendMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	uid, err := userID(ctx)
	if err != nil {
		return err
	}
	convID, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return err
	}
	var parent uuid.UUID
	if req.Msg.GetParentMessageId() != "" {
		if parent, err = parseID("parent_message_id", req.Msg.GetParentMessageId()); err != nil {
			return err
		}
	}
	stream, err := h.gen.Send(ctx, uid, chat.SendInput{
		ConversationID:  convID,
		Content:         req.Msg.GetContent(),
		Model:           req.Msg.GetModel(),
		ClientMessageID: req.Msg.GetClientMessageId(),
		ParentID:        parent,
		Attachments:     toUploads(req.Msg.GetAttachments()),
	})
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// ResumeGeneration implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) ResumeGeneration(ctx context.Context, req *connect.Request[parleyv1.ResumeGenerationRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	uid, err := userID(ctx)
	if err != nil {
		return err
	}
	genID, err := parseID("generation_id", req.Msg.GetGenerationId())
	if err != nil {
		return err
	}
	stream, err := h.gen.Resume(ctx, uid, genID, req.Msg.GetAfterSeq())
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// RegenerateMessage implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) RegenerateMessage(ctx context.Context, req *connect.Request[parleyv1.RegenerateMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	uid, err := userID(ctx)
	if err != nil {
		return err
	}
	msgID, err := parseID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return err
	}
	stream, err := h.gen.Regenerate(ctx, uid, chat.RegenerateInput{
		MessageID: msgID, Model: req.Msg.GetModel(), ClientMessageID: req.Msg.GetClientMessageId(),
	})
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// EditMessage implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) EditMessage(ctx context.Context, req *connect.Request[parleyv1.EditMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	uid, err := userID(ctx)
	if err != nil {
		return err
	}
	msgID, err := parseID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return err
	}
	stream, err := h.gen.Edit(ctx, uid, chat.EditInput{
		MessageID: msgID, Content: req.Msg.GetContent(), Model: req.Msg.GetModel(), ClientMessageID: req.Msg.GetClientMessageId(),
		Attachments: toUploads(req.Msg.GetAttachments()),
	})
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// StopGeneration implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) StopGeneration(ctx context.Context, req *connect.Request[parleyv1.StopGenerationRequest]) (*connect.Response[parleyv1.StopGenerationResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	genID, err := parseID("generation_id", req.Msg.GetGenerationId())
	if err != nil {
		return nil, err
	}
	m, err := h.gen.Stop(ctx, uid, genID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.StopGenerationResponse{Message: toProtoMessage(m)}), nil
}

// relay sends a generation's events until its end. A failed generation
// ends the stream with its error; a client that leaves ends only the relay.
func relay(ctx context.Context, stream chat.Stream, out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	// Deltas are nearly every event of an answer: they go out in one
	// message, reused, since Send encodes a message before it returns and
	// nothing keeps it. Other events get a message of their own.
	text := &parleyv1.TextDelta{}
	delta := &parleyv1.SendMessageResponse{Event: &parleyv1.SendMessageResponse_Delta{Delta: text}}
	// While the next event is already waiting, the message is sent without
	// a flush of its own (flush.go): a follower that is behind gets a
	// burst in a few frames, and one that keeps up gets each event at once.
	buffered, _ := stream.(chat.BufferedStream)
	gate := flushGateOf(ctx)
	if buffered == nil {
		gate = nil
	}
	defer gate.setHold(false)
	for {
		ev, err := stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		msg := delta
		switch ev.Kind {
		case chat.EventFailed:
			return ev.Error.Err()
		case chat.EventDelta:
			delta.Seq, text.Text = ev.Seq, ev.Text
		default:
			msg = toProtoEvent(ev)
		}
		gate.setHold(gate != nil && buffered.Buffered() && !ev.Terminal())
		if err := out.Send(msg); err != nil {
			return err
		}
	}
}

func toProtoEvent(ev chat.Event) *parleyv1.SendMessageResponse {
	res := &parleyv1.SendMessageResponse{Seq: ev.Seq}
	switch ev.Kind {
	case chat.EventStarted:
		res.Event = &parleyv1.SendMessageResponse_Started{Started: &parleyv1.GenerationStarted{
			UserMessage:        toProtoMessage(ev.Started.UserMessage),
			AssistantMessageId: ev.Started.AssistantMessageID.String(),
			GenerationId:       ev.Started.GenerationID.String(),
			Model:              ev.Started.Model,
		}}
	case chat.EventDelta:
		res.Event = &parleyv1.SendMessageResponse_Delta{Delta: &parleyv1.TextDelta{Text: ev.Text}}
	case chat.EventUsage:
		res.Event = &parleyv1.SendMessageResponse_Usage{Usage: &parleyv1.Usage{PromptTokens: ev.Usage.PromptTokens, CompletionTokens: ev.Usage.CompletionTokens}}
	case chat.EventTitle:
		res.Event = &parleyv1.SendMessageResponse_Title{Title: &parleyv1.TitleGenerated{Title: ev.Title}}
	case chat.EventCompleted:
		res.Event = &parleyv1.SendMessageResponse_Completed{Completed: &parleyv1.GenerationCompleted{Message: toProtoMessage(*ev.Message)}}
	case chat.EventToolCall:
		res.Event = &parleyv1.SendMessageResponse_ToolCall{ToolCall: &parleyv1.ToolCallStarted{CallId: ev.Tool.CallID, Name: ev.Tool.Name}}
	case chat.EventArtifactDelta:
		res.Event = &parleyv1.SendMessageResponse_ArtifactDelta{ArtifactDelta: &parleyv1.ArtifactDelta{CallId: ev.Tool.CallID, Text: ev.Text}}
	case chat.EventToolResult:
		res.Event = &parleyv1.SendMessageResponse_ToolResult{ToolResult: &parleyv1.ToolCallFinished{
			CallId: ev.Tool.CallID, Name: ev.Tool.Name, Artifact: toProtoSavedArtifact(ev.Tool.Artifact), Error: ev.Tool.Error,
		}}
	}
	return res
}

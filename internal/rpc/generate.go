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
	stream, err := h.send(ctx, req)
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// send starts the answer SendMessage relays. Each streaming handler starts
// its stream in a function of its own, so that while it relays (for as
// long as the answer lasts) its goroutine's stack holds none of what
// starting took (relay says why).
func (h *ChatHandler) send(ctx context.Context, req *connect.Request[parleyv1.SendMessageRequest]) (chat.Stream, error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	var parent uuid.UUID
	if req.Msg.GetParentMessageId() != "" {
		if parent, err = parseID("parent_message_id", req.Msg.GetParentMessageId()); err != nil {
			return nil, err
		}
	}
	return h.gen.Send(ctx, uid, chat.SendInput{
		ConversationID:  convID,
		Content:         req.Msg.GetContent(),
		Model:           req.Msg.GetModel(),
		ClientMessageID: req.Msg.GetClientMessageId(),
		ParentID:        parent,
		Attachments:     toUploads(req.Msg.GetAttachments()),
	})
}

// ResumeGeneration implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) ResumeGeneration(ctx context.Context, req *connect.Request[parleyv1.ResumeGenerationRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	stream, err := h.resume(ctx, req)
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// resume finds the stream ResumeGeneration relays.
func (h *ChatHandler) resume(ctx context.Context, req *connect.Request[parleyv1.ResumeGenerationRequest]) (chat.Stream, error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	genID, err := parseID("generation_id", req.Msg.GetGenerationId())
	if err != nil {
		return nil, err
	}
	return h.gen.Resume(ctx, uid, genID, req.Msg.GetAfterSeq())
}

// RegenerateMessage implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) RegenerateMessage(ctx context.Context, req *connect.Request[parleyv1.RegenerateMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	stream, err := h.regenerate(ctx, req)
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// regenerate starts the answer RegenerateMessage relays.
func (h *ChatHandler) regenerate(ctx context.Context, req *connect.Request[parleyv1.RegenerateMessageRequest]) (chat.Stream, error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	msgID, err := parseID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return nil, err
	}
	return h.gen.Regenerate(ctx, uid, chat.RegenerateInput{
		MessageID: msgID, Model: req.Msg.GetModel(), ClientMessageID: req.Msg.GetClientMessageId(),
	})
}

// EditMessage implements parleyv1connect.ChatServiceHandler.
func (h *ChatHandler) EditMessage(ctx context.Context, req *connect.Request[parleyv1.EditMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	stream, err := h.edit(ctx, req)
	if err != nil {
		return err
	}
	return relay(ctx, stream, out)
}

// edit starts the answer EditMessage relays.
func (h *ChatHandler) edit(ctx context.Context, req *connect.Request[parleyv1.EditMessageRequest]) (chat.Stream, error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	msgID, err := parseID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return nil, err
	}
	return h.gen.Edit(ctx, uid, chat.EditInput{
		MessageID: msgID, Content: req.Msg.GetContent(), Model: req.Msg.GetModel(), ClientMessageID: req.Msg.GetClientMessageId(),
		Attachments: toUploads(req.Msg.GetAttachments()),
	})
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
//
// A stream's handler spends its life here, waiting in Next for the next
// event, with every frame from net/http's down to this one on its stack.
// The goroutine's stack grows to 16 KiB while the answer starts; the
// collector halves it once the goroutine uses under a quarter of it, so
// the frames of that wait are kept small (every streaming handler starts
// its stream in a function of its own, the interceptors keep their work
// in calls, and what relay does per event is in its relayer):
// 8 KiB per held stream over HTTP/2, where the wait holds 3,040 bytes of
// the 3,296 that allow it. Over HTTP/1.1 net/http's connection loop adds
// 1,120 bytes and the stack stays at 16 KiB. TestWaitingStacks holds the
// HTTP/2 figure.
func relay(ctx context.Context, stream chat.Stream, out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	r := newRelayer(ctx, stream)
	defer r.gate.setHold(false)
	for {
		ev, err := stream.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.send(out, &ev); err != nil {
			return err
		}
	}
}

// relayer is what relay keeps between events.
type relayer struct {
	// Deltas are nearly every event of an answer: they go out in one
	// message, reused, since Send encodes a message before it returns and
	// nothing keeps it. Other events get a message of their own.
	text  *parleyv1.TextDelta
	delta *parleyv1.SendMessageResponse
	// While the next event is already waiting, the message is sent without
	// a flush of its own (flush.go): a follower that is behind gets a
	// burst in a few frames, and one that keeps up gets each event at once.
	buffered chat.BufferedStream
	gate     *flushGate
}

func newRelayer(ctx context.Context, stream chat.Stream) *relayer {
	text := &parleyv1.TextDelta{}
	r := &relayer{text: text, delta: &parleyv1.SendMessageResponse{Event: &parleyv1.SendMessageResponse_Delta{Delta: text}}}
	if r.buffered, _ = stream.(chat.BufferedStream); r.buffered != nil {
		r.gate = flushGateOf(ctx)
	}
	return r
}

// send sends one event; a failed event is the stream's error.
func (r *relayer) send(out *connect.ServerStream[parleyv1.SendMessageResponse], ev *chat.Event) error {
	msg := r.delta
	switch ev.Kind {
	case chat.EventFailed:
		return ev.Error.Err()
	case chat.EventDelta:
		r.delta.Seq, r.text.Text = ev.Seq, ev.Text
	default:
		msg = toProtoEvent(*ev)
	}
	r.gate.setHold(r.gate != nil && r.buffered.Buffered() && !ev.Terminal())
	return out.Send(msg)
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

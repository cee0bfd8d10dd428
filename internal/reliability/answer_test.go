package reliability

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// answer is what one client received of one answer's stream.
type answer struct {
	stream       *connect.ServerStreamForClient[parleyv1.SendMessageResponse]
	AnswerID     string
	UserMsgID    string
	GenerationID string
	text         strings.Builder
	lastSeq      int64
	// Completed is the saved message the stream ended with; nil when it
	// ended with an error.
	Completed *parleyv1.Message
	// Err is how the stream ended when it did not complete.
	Err   error
	ended bool
}

// Text is the concatenated deltas received so far.
func (a *answer) Text() string { return a.text.String() }

// next receives one event; it returns false at the end of the stream.
func (a *answer) next(tb testing.TB) bool {
	tb.Helper()
	if a.ended {
		return false
	}
	if !a.stream.Receive() {
		a.ended = true
		a.Err = a.stream.Err()
		if a.Err == nil && a.Completed == nil {
			a.Err = errors.New("the stream ended without a completed event or an error")
		}
		a.stream.Close()
		return false
	}
	ev := a.stream.Msg()
	if ev.Seq != a.lastSeq+1 && a.lastSeq != 0 {
		tb.Errorf("event seq %d after %d: an event was lost or repeated", ev.Seq, a.lastSeq)
	}
	a.lastSeq = ev.Seq
	switch e := ev.Event.(type) {
	case *parleyv1.SendMessageResponse_Started:
		a.AnswerID, a.GenerationID = e.Started.AssistantMessageId, e.Started.GenerationId
		a.UserMsgID = e.Started.UserMessage.GetId()
	case *parleyv1.SendMessageResponse_Delta:
		a.text.WriteString(e.Delta.Text)
	case *parleyv1.SendMessageResponse_Completed:
		a.Completed = e.Completed.Message
	}
	return true
}

// until receives events until the answer's text has n bytes or more.
func (a *answer) until(tb testing.TB, n int) {
	tb.Helper()
	for a.text.Len() < n {
		if !a.next(tb) {
			tb.Fatalf("the stream ended with %q (%v) before %d bytes", a.Text(), a.Err, n)
		}
	}
}

// started receives the started event.
func (a *answer) started(tb testing.TB) {
	tb.Helper()
	for a.AnswerID == "" {
		if !a.next(tb) {
			tb.Fatalf("the stream ended before started: %v", a.Err)
		}
	}
}

// drain receives to the end of the stream.
func (a *answer) drain(tb testing.TB) {
	tb.Helper()
	for a.next(tb) {
	}
}

// send starts an answer in conversation conv through c.
func send(tb testing.TB, ctx context.Context, c parleyv1connect.ChatServiceClient, conv, content string) *answer {
	tb.Helper()
	s, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv, Content: content}))
	if err != nil {
		tb.Fatalf("SendMessage: %v", err)
	}
	a := &answer{stream: s}
	a.started(tb)
	return a
}

// started wraps an answer stream that has just opened (an edit, a
// regeneration) and receives its started event.
func opened(tb testing.TB, s *connect.ServerStreamForClient[parleyv1.SendMessageResponse], err error) *answer {
	tb.Helper()
	if err != nil {
		tb.Fatalf("open answer stream: %v", err)
	}
	a := &answer{stream: s}
	a.started(tb)
	return a
}

// resume follows generation gen through c from afterSeq.
func resume(tb testing.TB, ctx context.Context, c parleyv1connect.ChatServiceClient, gen string, afterSeq int64) *answer {
	tb.Helper()
	s, err := c.ResumeGeneration(ctx, connect.NewRequest(&parleyv1.ResumeGenerationRequest{GenerationId: gen, AfterSeq: afterSeq}))
	if err != nil {
		tb.Fatalf("ResumeGeneration: %v", err)
	}
	return &answer{stream: s, GenerationID: gen, lastSeq: afterSeq}
}

// conversation creates a titled conversation (no title request competes
// with the answer for the fake model) and returns its id.
func conversation(tb testing.TB, ctx context.Context, c parleyv1connect.ChatServiceClient) string {
	tb.Helper()
	res, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "reliability"}))
	if err != nil {
		tb.Fatalf("CreateConversation: %v", err)
	}
	return res.Msg.Conversation.Id
}

// saved reads the assistant message id as the database has it now.
func (c *cluster) saved(tb testing.TB, user uuid.UUID, id string) chat.Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Store.GetMessage(ctx, user, uuid.MustParse(id))
	if err != nil {
		tb.Fatalf("read message %s: %v", id, err)
	}
	return m
}

// testContext bounds a test's calls.
func testContext(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// newUser is a new user id.
func newUser() uuid.UUID { return uuid.New() }

// codeOf is err's Connect code, for messages.
func codeOf(err error) connect.Code { return connect.CodeOf(err) }

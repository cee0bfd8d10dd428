package llm

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
)

// OfflineModel is the model name under which the offline responder is
// offered, so development setups without keys still have a model to pick.
const OfflineModel = "parley-offline"

// Offline is a chat.Provider that answers like ELIZA, without network or keys. It
// is deterministic: the same conversation always gets the same answer, which
// keeps tests and demos repeatable. It ignores Request.Model and MaxTokens.
// It is safe for concurrent use.
type Offline struct {
	delay time.Duration
}

// NewOffline returns an Offline provider that waits delay before each word;
// 0 streams without waiting, which tests want.
func NewOffline(delay time.Duration) *Offline {
	return &Offline{delay: max(delay, 0)}
}

// Stream implements chat.Provider. It fails only with apperr Canceled or
// DeadlineExceeded, when ctx ends.
//
// When tools are offered and the user's message asks for a document
// ("write ...", "draft ...", "create ..."), it calls create_artifact with a
// small deterministic document, as a real model would; once the tool's
// result comes back, it says what it wrote. So `parley dev` runs the whole
// tool path with no key.
func (o *Offline) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx)
	}
	var pieces []chat.Delta
	finish := "stop"
	last := chat.PromptMessage{}
	if n := len(req.Messages); n > 0 {
		last = req.Messages[n-1]
	}
	step, goal := agentStep(req)
	switch {
	case step != "":
		pieces, finish = agentPieces(req, step, goal)
	case last.Role == chat.RoleTool:
		pieces = words(toolReply(req.Messages))
	case offers(req.Tools, "create_artifact") && asksForDocument(last.Content):
		pieces = documentCall(last.Content)
		finish = "tool_calls"
	default:
		pieces = words(elizaAnswer(lastUserMessage(req.Messages)))
	}
	return &offlineStream{
		ctx:    ctx,
		delay:  o.delay,
		pieces: pieces,
		finish: finish,
		done:   make(chan struct{}),
		usage:  chat.Usage{PromptTokens: promptEstimate(req.Messages)},
	}, nil
}

// words splits an answer into deltas of one word each, spaces leading.
func words(answer string) []chat.Delta {
	fields := strings.Fields(answer)
	pieces := make([]chat.Delta, len(fields))
	for i, w := range fields {
		if i > 0 {
			w = " " + w
		}
		pieces[i] = chat.Delta{Text: w}
	}
	return pieces
}

// lastUserMessage is what ELIZA answers; older turns do not matter to it.
func lastUserMessage(msgs []chat.PromptMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == chat.RoleUser {
			return msgs[i].Content
		}
	}
	return ""
}

// ctxError converts an ended context into the matching application error.
func ctxError(ctx context.Context) *apperr.Error {
	return interpretError(ctx.Err(), ctx, ctx, false)
}

// offlineStream hands out pre-computed words, one per Recv.
type offlineStream struct {
	ctx    context.Context
	delay  time.Duration
	pieces []chat.Delta
	finish string
	next   int
	usage  chat.Usage
	err    error
	// received counts the runes handed out, so usage grows as a real
	// provider's estimate would and equals chat.EstimateTokens(answer) at io.EOF.
	received int

	closeOnce sync.Once
	done      chan struct{} // closed by Close to wake a waiting Recv
}

// Recv implements chat.ModelStream.
func (s *offlineStream) Recv() (chat.Delta, error) {
	if s.err != nil {
		return chat.Delta{}, s.err
	}
	select {
	case <-s.done:
		s.err = apperr.Wrap(errClosed, apperr.Canceled, "the answer stream was closed")
		return chat.Delta{}, s.err
	default:
	}
	if s.next == len(s.pieces) {
		s.err = io.EOF
		return chat.Delta{}, s.err
	}
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			s.err = ctxError(s.ctx)
			return chat.Delta{}, s.err
		case <-s.done:
			s.err = apperr.Wrap(errClosed, apperr.Canceled, "the answer stream was closed")
			return chat.Delta{}, s.err
		}
	} else if s.ctx.Err() != nil {
		s.err = ctxError(s.ctx)
		return chat.Delta{}, s.err
	}
	piece := s.pieces[s.next]
	s.next++
	s.received += utf8.RuneCountInString(piece.Text)
	if piece.ToolCall != nil {
		s.received += utf8.RuneCountInString(piece.ToolCall.Arguments)
	}
	s.usage.CompletionTokens = int64((s.received + 3) / 4)
	return piece, nil
}

// Usage implements chat.ModelStream.
func (s *offlineStream) Usage() chat.Usage { return s.usage }

// FinishReason implements chat.ModelStream.
func (s *offlineStream) FinishReason() string {
	if s.err == io.EOF {
		return s.finish
	}
	return ""
}

// Close implements chat.ModelStream.
func (s *offlineStream) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

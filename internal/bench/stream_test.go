//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// streamResult is what a client saw of one answer.
type streamResult struct {
	ttft   time.Duration   // request sent to first text received
	gaps   []time.Duration // between consecutive pieces of text
	deltas int
	took   time.Duration // request sent to end of stream
	err    error         // a failed call, or an answer not delivered whole and in order
}

// parleyStream sends one message through Parley and reads the answer,
// checking that every event arrives once, in order (seq grows by one), and
// that the text is exactly what the model sent.
func parleyStream(ctx context.Context, c parleyv1connect.ChatServiceClient, conversationID string, want []string) streamResult {
	var res streamResult
	begin := time.Now()
	stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conversationID, Content: prompt}))
	if err != nil {
		res.err = err
		return res
	}
	defer stream.Close()
	var (
		last      time.Time
		seq       int64
		text      strings.Builder
		completed bool
	)
	fail := func(err error) {
		if res.err == nil {
			res.err = err
		}
	}
	for stream.Receive() {
		now := time.Now()
		msg := stream.Msg()
		if msg.GetSeq() != seq+1 {
			fail(fmt.Errorf("event seq %d after %d", msg.GetSeq(), seq))
		}
		seq = msg.GetSeq()
		switch {
		case msg.GetDelta() != nil:
			if res.deltas == 0 {
				res.ttft = now.Sub(begin)
			} else {
				res.gaps = append(res.gaps, now.Sub(last))
			}
			last = now
			res.deltas++
			text.WriteString(msg.GetDelta().GetText())
		case msg.GetCompleted() != nil:
			completed = true
		}
	}
	res.took = time.Since(begin)
	if err := stream.Err(); err != nil {
		fail(err)
	}
	if want := strings.Join(want, ""); text.String() != want {
		fail(fmt.Errorf("received %d bytes of text in %d deltas, not the %d bytes sent", text.Len(), res.deltas, len(want)))
	}
	if !completed {
		fail(errors.New("no completed event"))
	}
	return res
}

// directClient streams straight from the fake model with openai-go: the
// baseline of the streaming figures. Its transport keeps enough idle
// connections for every concurrent stream, so the baseline pays no
// connection set-up that a well-configured client would not.
func directClient(baseURL string) openai.ChatCompletionService {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 4096
	transport.MaxIdleConnsPerHost = 4096
	return openai.NewChatCompletionService(
		option.WithBaseURL(baseURL),
		option.WithHTTPClient(&http.Client{Transport: transport}),
		option.WithMaxRetries(0),
	)
}

// directStream asks the fake model for an answer the way Parley's provider
// does (streaming, with usage) and reads it.
func directStream(ctx context.Context, svc openai.ChatCompletionService, want []string) streamResult {
	var res streamResult
	begin := time.Now()
	stream := svc.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	defer stream.Close()
	var (
		last time.Time
		text strings.Builder
	)
	for stream.Next() {
		now := time.Now()
		var piece string
		for _, choice := range stream.Current().Choices {
			piece += choice.Delta.Content
		}
		if piece == "" {
			continue
		}
		if res.deltas == 0 {
			res.ttft = now.Sub(begin)
		} else {
			res.gaps = append(res.gaps, now.Sub(last))
		}
		last = now
		res.deltas++
		text.WriteString(piece)
	}
	res.took = time.Since(begin)
	if err := stream.Err(); err != nil {
		res.err = err
	} else if want := strings.Join(want, ""); text.String() != want {
		res.err = fmt.Errorf("received %d bytes, want %d", text.Len(), len(want))
	}
	return res
}

// load is how one run of a streaming measurement drives its target.
type load struct {
	conc   int      // clients, each streaming one answer after another
	answer []string // what the fake model sends, 20 ms apart
	// Either streams (per run, after warm-up streams that are not counted)
	// or window: the streams that start within it are counted, after a
	// ramp of one answer's length during which the clients start one by one.
	streams int
	window  time.Duration
}

// warmupStreams are not counted in a run measured by stream count.
const warmupStreams = 5

// answerLength is how long the fake model takes to send answer.
func answerLength(answer []string) time.Duration { return time.Duration(len(answer)) * chunkInterval }

// runStats is one run of a load against one target.
type runStats struct {
	ttft    []time.Duration
	gaps    []time.Duration
	streams int // counted streams
	deltas  int
	failed  int
	errs    []string // the first few failures
	all     int      // every stream, counted or not
	elapsed time.Duration
}

// closedLoop runs l against one target (one streams one answer for client w)
// and collects the counted streams.
func closedLoop(ctx context.Context, l load, one func(ctx context.Context, w int) streamResult) runStats {
	var (
		mu  sync.Mutex
		out runStats
		wg  sync.WaitGroup
	)
	ramp := time.Duration(0)
	if l.conc > 1 {
		ramp = answerLength(l.answer)
	}
	begin := time.Now()
	from, until := begin.Add(ramp), begin.Add(ramp+l.window)
	var left atomic.Int64
	left.Store(int64(l.streams + warmupStreams))
	for w := range l.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sleepCtx(ctx, time.Duration(w)*ramp/time.Duration(l.conc))
			for ctx.Err() == nil {
				var counted bool
				if l.streams > 0 {
					n := left.Add(-1)
					if n < 0 {
						return
					}
					counted = n < int64(l.streams)
				}
				started := time.Now()
				if l.streams == 0 {
					if !started.Before(until) {
						return
					}
					counted = !started.Before(from)
				}
				r := one(ctx, w)
				mu.Lock()
				out.all++
				if counted {
					out.streams++
					if r.err != nil {
						out.failed++
						if len(out.errs) < 3 {
							out.errs = append(out.errs, r.err.Error())
						}
					} else {
						out.ttft = append(out.ttft, r.ttft)
						out.gaps = append(out.gaps, r.gaps...)
						out.deltas += r.deltas
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(begin)
	return out
}

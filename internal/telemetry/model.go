package telemetry

import (
	"context"
	"errors"
	"io"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/chat"
)

// Attribute keys of model-call spans, from OpenTelemetry's semantic
// conventions for generative AI.
const (
	attrOperation    = "gen_ai.operation.name"
	attrRequestModel = "gen_ai.request.model"
	attrMaxTokens    = "gen_ai.request.max_tokens"
	attrInputTokens  = "gen_ai.usage.input_tokens"
	attrOutputTokens = "gen_ai.usage.output_tokens"
	attrFinish       = "gen_ai.response.finish_reasons"
)

// Provider returns p with a client span around each model call: one per
// Stream (one upstream request), from the request until its stream ends
// or is closed, named "chat <model>" and carrying the model, the number
// of tools offered and, once the provider reported them at the end of
// the stream, the token counts and the finish reason. A call that fails
// or ends in an error records it. Prompts and answers are never recorded.
func Provider(p chat.Provider, tp trace.TracerProvider) chat.Provider {
	return &tracedProvider{next: p, tracer: tp.Tracer(instrumentation)}
}

type tracedProvider struct {
	next   chat.Provider
	tracer trace.Tracer
}

func (p *tracedProvider) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	ctx, span := p.tracer.Start(ctx, "chat "+req.Model, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String(attrOperation, "chat"),
		attribute.String(attrRequestModel, req.Model),
		attribute.Int("parley.model.tools", len(req.Tools)),
		attribute.Int("parley.model.messages", len(req.Messages)),
	))
	if req.MaxTokens > 0 {
		span.SetAttributes(attribute.Int(attrMaxTokens, req.MaxTokens))
	}
	s, err := p.next.Stream(ctx, req)
	if err != nil {
		fail(span, err)
		span.End()
		return nil, err
	}
	return &tracedStream{ModelStream: s, span: span}, nil
}

// tracedStream ends its span at the stream's end (io.EOF or an error) or
// at Close, whichever comes first.
type tracedStream struct {
	chat.ModelStream
	span  trace.Span
	ended bool // Recv's alone: Close, from any goroutine, only ends the span
}

func (s *tracedStream) Recv() (chat.Delta, error) {
	d, err := s.ModelStream.Recv()
	if err != nil && !s.ended {
		s.ended = true
		if errors.Is(err, io.EOF) {
			u := s.ModelStream.Usage()
			s.span.SetAttributes(
				attribute.Int64(attrInputTokens, u.PromptTokens),
				attribute.Int64(attrOutputTokens, u.CompletionTokens),
				attribute.StringSlice(attrFinish, []string{s.ModelStream.FinishReason()}),
			)
		} else {
			fail(s.span, err)
		}
		s.span.End()
	}
	return d, err
}

func (s *tracedStream) Close() error {
	err := s.ModelStream.Close()
	// A span already ended ignores a second End.
	s.span.End()
	return err
}

// fail records err on span as its status.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/chat"
)

// Toolbox returns tools with a span around each call an answer makes,
// named "execute_tool <name>"; a call whose result is an error (the
// model's mistake, which it reads and may correct) sets the span's status
// to error. Arguments and results are never recorded: they hold what the
// user wrote.
func Toolbox(tools chat.Toolbox, tp trace.TracerProvider) chat.Toolbox {
	return &tracedToolbox{next: tools, tracer: tp.Tracer(instrumentation)}
}

type tracedToolbox struct {
	next   chat.Toolbox
	tracer trace.Tracer
}

func (t *tracedToolbox) Specs() []chat.ToolSpec { return t.next.Specs() }

func (t *tracedToolbox) Call(ctx context.Context, tc chat.ToolContext, call chat.ToolCall) chat.ToolResult {
	ctx, span := startTool(ctx, t.tracer, call)
	defer span.End()
	return endTool(span, t.next.Call(ctx, tc, call))
}

// AgentTools is Toolbox for the tools agent steps call.
func AgentTools(tools agent.Tools, tp trace.TracerProvider) agent.Tools {
	return &tracedAgentTools{next: tools, tracer: tp.Tracer(instrumentation)}
}

type tracedAgentTools struct {
	next   agent.Tools
	tracer trace.Tracer
}

func (t *tracedAgentTools) Specs(names []string) []chat.ToolSpec { return t.next.Specs(names) }

func (t *tracedAgentTools) Call(ctx context.Context, tc agent.ToolCall, call chat.ToolCall) chat.ToolResult {
	ctx, span := startTool(ctx, t.tracer, call)
	defer span.End()
	return endTool(span, t.next.Call(ctx, tc, call))
}

func startTool(ctx context.Context, tracer trace.Tracer, call chat.ToolCall) (context.Context, trace.Span) {
	return tracer.Start(ctx, "execute_tool "+call.Name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "execute_tool"),
		attribute.String("gen_ai.tool.name", call.Name),
		attribute.String("gen_ai.tool.call.id", call.ID),
	))
}

func endTool(span trace.Span, r chat.ToolResult) chat.ToolResult {
	if r.IsError {
		span.SetStatus(codes.Error, "the tool call failed")
	}
	if r.Artifact != nil {
		span.SetAttributes(attribute.String("parley.artifact.id", r.Artifact.ID.String()), attribute.Int("parley.artifact.version", r.Artifact.Version))
	}
	return r
}

// AgentStep returns h with a span around each delivery of an agent step,
// named "agent.step", with the run, the step's index, the attempt and the
// requeue count. A delivery over HTTP (QStash's) is a child of the
// delivery's server span; one from River starts a trace of its own.
func AgentStep(h agent.Handler, tp trace.TracerProvider) agent.Handler {
	tracer := tp.Tracer(instrumentation)
	return func(ctx context.Context, t agent.Task) error {
		ctx, span := tracer.Start(ctx, "agent.step", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("parley.agent.run_id", t.RunID.String()),
			attribute.Int("parley.agent.step", t.Step),
			attribute.Int("parley.agent.attempt", t.Attempt),
			attribute.Int("parley.agent.requeue", t.Requeue),
		))
		defer span.End()
		err := h(ctx, t)
		if err != nil {
			fail(span, err)
		}
		return err
	}
}

package rpc

import (
	"context"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apperr"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// AgentHandler serves parley.v1.AgentService on top of agent.Service.
type AgentHandler struct {
	agents *agent.Service
}

var _ parleyv1connect.AgentServiceHandler = (*AgentHandler)(nil)

// NewAgentHandler returns a handler for svc.
func NewAgentHandler(svc *agent.Service) *AgentHandler { return &AgentHandler{agents: svc} }

// StartRun implements parleyv1connect.AgentServiceHandler.
func (h *AgentHandler) StartRun(ctx context.Context, req *connect.Request[parleyv1.StartRunRequest]) (*connect.Response[parleyv1.StartRunResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := optionalID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	tools := make([]string, 0, len(req.Msg.GetTools()))
	for _, t := range req.Msg.GetTools() {
		name, ok := agentToolNames[t]
		if !ok {
			return nil, apperr.InvalidField("tools", "%v is not a tool", t)
		}
		tools = append(tools, name)
	}
	run, err := h.agents.Start(ctx, uid, agent.StartRequest{
		Goal: req.Msg.GetGoal(), ConversationID: convID, Tools: tools, Model: req.Msg.GetModel(), RequestID: req.Msg.GetRequestId(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.StartRunResponse{Run: toProtoRun(run)}), nil
}

// GetRun implements parleyv1connect.AgentServiceHandler.
func (h *AgentHandler) GetRun(ctx context.Context, req *connect.Request[parleyv1.GetRunRequest]) (*connect.Response[parleyv1.GetRunResponse], error) {
	uid, id, err := h.runRef(ctx, req.Msg.GetRunId())
	if err != nil {
		return nil, err
	}
	run, err := h.agents.Get(ctx, uid, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.GetRunResponse{Run: toProtoRun(run)}), nil
}

// ListRuns implements parleyv1connect.AgentServiceHandler.
func (h *AgentHandler) ListRuns(ctx context.Context, req *connect.Request[parleyv1.ListRunsRequest]) (*connect.Response[parleyv1.ListRunsResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	runs, next, err := h.agents.List(ctx, uid, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &parleyv1.ListRunsResponse{NextPageToken: next, Runs: make([]*parleyv1.Run, 0, len(runs))}
	for _, r := range runs {
		out.Runs = append(out.Runs, toProtoRun(r))
	}
	return connect.NewResponse(out), nil
}

// CancelRun implements parleyv1connect.AgentServiceHandler.
func (h *AgentHandler) CancelRun(ctx context.Context, req *connect.Request[parleyv1.CancelRunRequest]) (*connect.Response[parleyv1.CancelRunResponse], error) {
	uid, id, err := h.runRef(ctx, req.Msg.GetRunId())
	if err != nil {
		return nil, err
	}
	run, err := h.agents.Cancel(ctx, uid, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.CancelRunResponse{Run: toProtoRun(run)}), nil
}

// WatchRun implements parleyv1connect.AgentServiceHandler. The run's last
// event carries the run as it ended.
func (h *AgentHandler) WatchRun(ctx context.Context, req *connect.Request[parleyv1.WatchRunRequest], out *connect.ServerStream[parleyv1.WatchRunResponse]) error {
	uid, id, err := h.runRef(ctx, req.Msg.GetRunId())
	if err != nil {
		return err
	}
	return h.agents.Watch(ctx, uid, id, req.Msg.GetAfterSeq(), func(ev agent.Event) error {
		msg := toProtoRunEvent(ev)
		if ev.Kind.Terminal() {
			run, err := h.agents.Get(ctx, uid, id)
			if err != nil {
				return err
			}
			ended := &parleyv1.RunEnded{Run: toProtoRun(run)}
			switch ev.Kind {
			case agent.EventRunFinished:
				msg.Event = &parleyv1.WatchRunResponse_RunFinished{RunFinished: ended}
			case agent.EventRunFailed:
				msg.Event = &parleyv1.WatchRunResponse_RunFailed{RunFailed: ended}
			default:
				msg.Event = &parleyv1.WatchRunResponse_RunCanceled{RunCanceled: ended}
			}
		}
		return out.Send(msg)
	})
}

func (h *AgentHandler) runRef(ctx context.Context, raw string) (uuid.UUID, uuid.UUID, error) {
	uid, err := userID(ctx)
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	id, err := parseID("run_id", raw)
	return uid, id, err
}

var agentToolNames = map[parleyv1.AgentTool]string{
	parleyv1.AgentTool_AGENT_TOOL_SEARCH:          agent.ToolSearch,
	parleyv1.AgentTool_AGENT_TOOL_READ_ARTIFACT:   agent.ToolReadArtifact,
	parleyv1.AgentTool_AGENT_TOOL_CREATE_ARTIFACT: agent.ToolCreateArtifact,
	parleyv1.AgentTool_AGENT_TOOL_UPDATE_ARTIFACT: agent.ToolUpdateArtifact,
}

var runStatuses = map[agent.Status]parleyv1.RunStatus{
	agent.StatusQueued:    parleyv1.RunStatus_RUN_STATUS_QUEUED,
	agent.StatusRunning:   parleyv1.RunStatus_RUN_STATUS_RUNNING,
	agent.StatusSucceeded: parleyv1.RunStatus_RUN_STATUS_SUCCEEDED,
	agent.StatusFailed:    parleyv1.RunStatus_RUN_STATUS_FAILED,
	agent.StatusCanceled:  parleyv1.RunStatus_RUN_STATUS_CANCELED,
}

var stepStatuses = map[agent.StepStatus]parleyv1.StepStatus{
	agent.StepPending:   parleyv1.StepStatus_STEP_STATUS_PENDING,
	agent.StepRunning:   parleyv1.StepStatus_STEP_STATUS_RUNNING,
	agent.StepSucceeded: parleyv1.StepStatus_STEP_STATUS_SUCCEEDED,
	agent.StepFailed:    parleyv1.StepStatus_STEP_STATUS_FAILED,
	agent.StepCanceled:  parleyv1.StepStatus_STEP_STATUS_CANCELED,
}

// stepName is the proto name of the step at index i (unspecified for run
// events, i < 0).
func stepName(i int) parleyv1.StepName {
	if i < 0 || i >= len(agent.Steps) {
		return parleyv1.StepName_STEP_NAME_UNSPECIFIED
	}
	return parleyv1.StepName(i + 1) // STEP_NAME_PLAN = 1, in agent.Steps' order
}

func optionalTime(t interface{ IsZero() bool }, ts *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return ts
}

func toProtoRun(r agent.Run) *parleyv1.Run {
	out := &parleyv1.Run{
		Id: r.ID.String(), Goal: r.Goal, ConversationId: idString(r.ConversationID), Model: r.Model,
		Status: runStatuses[r.Status], Summary: r.Summary, Error: r.Error, TotalTokens: r.TotalTokens,
		SummaryMessageId: idString(r.SummaryMessageID), CreateTime: timestamppb.New(r.CreateTime),
		UpdateTime: timestamppb.New(r.UpdateTime), EndTime: optionalTime(r.EndTime, timestamppb.New(r.EndTime)), LastSeq: r.LastSeq,
	}
	for _, t := range r.Tools {
		for p, name := range agentToolNames {
			if name == t {
				out.Tools = append(out.Tools, p)
			}
		}
	}
	for _, s := range r.Steps {
		out.Steps = append(out.Steps, &parleyv1.Step{
			Name: stepName(s.Index), Status: stepStatuses[s.Status], Output: s.Output, Attempts: int32(s.Attempt),
			Error: s.Error, TotalTokens: s.TotalTokens,
			StartTime: optionalTime(s.StartTime, timestamppb.New(s.StartTime)), EndTime: optionalTime(s.EndTime, timestamppb.New(s.EndTime)),
		})
	}
	return out
}

func toProtoRunEvent(ev agent.Event) *parleyv1.WatchRunResponse {
	out := &parleyv1.WatchRunResponse{Seq: ev.Seq, Step: stepName(ev.Step), Time: timestamppb.New(ev.Time)}
	switch ev.Kind {
	case agent.EventStepStarted:
		out.Event = &parleyv1.WatchRunResponse_StepStarted{StepStarted: &parleyv1.StepStarted{Attempt: int32(ev.Attempt)}}
	case agent.EventDelta:
		out.Event = &parleyv1.WatchRunResponse_Delta{Delta: &parleyv1.StepDelta{Text: ev.Text}}
	case agent.EventToolCall:
		out.Event = &parleyv1.WatchRunResponse_ToolCall{ToolCall: &parleyv1.AgentToolCall{CallId: ev.CallID, Name: ev.Tool, Arguments: ev.Arguments}}
	case agent.EventToolResult:
		out.Event = &parleyv1.WatchRunResponse_ToolResult{ToolResult: &parleyv1.AgentToolResult{
			CallId: ev.CallID, Name: ev.Tool, Result: ev.Result, IsError: ev.IsError,
			ArtifactId: idString(ev.ArtifactID), ArtifactVersion: int32(ev.ArtifactVersion),
		}}
	case agent.EventStepFinished:
		out.Event = &parleyv1.WatchRunResponse_StepFinished{StepFinished: &parleyv1.StepFinished{Output: ev.Text, TotalTokens: ev.Tokens}}
	case agent.EventStepRetrying:
		out.Event = &parleyv1.WatchRunResponse_StepRetrying{StepRetrying: &parleyv1.StepRetrying{
			Attempt: int32(ev.Attempt), Error: ev.Error, NextAttemptTime: optionalTime(ev.NextAttempt, timestamppb.New(ev.NextAttempt)),
		}}
	}
	return out
}

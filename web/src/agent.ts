// Agent runs: WatchRun folded into a view of the run and its steps,
// resumed after a dropped connection.

import type { AgentClient } from "./clients.js";
import { follow, linkSignal, type StreamOptions } from "./follow.js";
import {
  RunStatus,
  StepName,
  StepStatus,
  type Run,
  type WatchRunResponse,
} from "./gen/parley/v1/agent_pb.js";

/** AgentToolUse is one tool call of a step. */
export interface AgentToolUse {
  callId: string;
  name: string;
  arguments: string;
  result?: string;
  isError?: boolean;
  /** The artifact the call wrote, if any. */
  artifactId?: string;
  artifactVersion?: number;
}

/** StepView is one step of a run as it is watched. */
export interface StepView {
  name: StepName;
  status: StepStatus;
  /** The attempt running or last run, from 1. */
  attempt: number;
  /** The model's text of the current attempt, as it streams. */
  text: string;
  /** The step's saved output, once it has finished. */
  output: string;
  toolUses: AgentToolUse[];
  /** Why the last attempt failed, while the step waits to be retried. */
  retryError?: string;
  /** When the next attempt is due. */
  nextAttemptTime?: Date;
}

/** RunView is an agent run folded from its events. */
export interface RunView {
  runId: string;
  /** The seq of the last event applied; watch again after it. */
  seq: bigint;
  status: RunStatus;
  /** The five steps, in order. */
  steps: StepView[];
  /** The run as saved, once it has ended. */
  run?: Run;
}

const stepOrder = [StepName.PLAN, StepName.RESEARCH, StepName.ANALYZE, StepName.EXECUTE, StepName.SUMMARIZE];

/** newRunView returns the view of a run before its first event. */
export function newRunView(runId: string): RunView {
  return {
    runId,
    seq: 0n,
    status: RunStatus.QUEUED,
    steps: stepOrder.map((name) => ({ name, status: StepStatus.PENDING, attempt: 0, text: "", output: "", toolUses: [] })),
  };
}

/** isRunEnded reports whether a run succeeded, failed or was canceled. */
export function isRunEnded(status: RunStatus): boolean {
  return status === RunStatus.SUCCEEDED || status === RunStatus.FAILED || status === RunStatus.CANCELED;
}

/**
 * applyRunEvent folds one WatchRun event into a view; events at or before
 * the view's seq are ignored (false).
 */
export function applyRunEvent(v: RunView, ev: WatchRunResponse): boolean {
  if (ev.seq <= v.seq) return false;
  v.seq = ev.seq;
  const step = v.steps.find((s) => s.name === ev.step);
  const e = ev.event;
  switch (e.case) {
    case "stepStarted":
      v.status = RunStatus.RUNNING;
      if (step) {
        step.status = StepStatus.RUNNING;
        step.attempt = e.value.attempt;
        step.text = "";
        step.toolUses = [];
        step.retryError = undefined;
        step.nextAttemptTime = undefined;
      }
      break;
    case "delta":
      if (step) step.text += e.value.text;
      break;
    case "toolCall":
      step?.toolUses.push({ callId: e.value.callId, name: e.value.name, arguments: e.value.arguments });
      break;
    case "toolResult": {
      const u = step?.toolUses.find((t) => t.callId === e.value.callId);
      if (u) {
        u.result = e.value.result;
        u.isError = e.value.isError;
        if (e.value.artifactId) {
          u.artifactId = e.value.artifactId;
          u.artifactVersion = e.value.artifactVersion;
        }
      }
      break;
    }
    case "stepFinished":
      if (step) {
        step.status = StepStatus.SUCCEEDED;
        step.output = e.value.output;
      }
      break;
    case "stepRetrying":
      if (step) {
        step.status = StepStatus.PENDING;
        step.retryError = e.value.error;
        const t = e.value.nextAttemptTime;
        step.nextAttemptTime = t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)) : undefined;
      }
      break;
    case "runFinished":
    case "runFailed":
    case "runCanceled": {
      const run = e.value.run;
      v.run = run;
      v.status = run?.status ?? (e.case === "runFinished" ? RunStatus.SUCCEEDED : e.case === "runFailed" ? RunStatus.FAILED : RunStatus.CANCELED);
      for (const saved of run?.steps ?? []) {
        const s = v.steps.find((x) => x.name === saved.name);
        if (s) {
          s.status = saved.status;
          s.output = saved.output || s.output;
          s.attempt = saved.attempts || s.attempt;
          if (saved.error) s.retryError = saved.error;
        }
      }
      break;
    }
  }
  return true;
}

/**
 * RunWatch follows a run to its end through WatchRun, reconnecting after
 * the last event seen when the connection drops.
 */
export class RunWatch {
  /** The run so far; updated in place as events arrive. */
  readonly view: RunView;
  /** Resolves with the ended run's view; rejects with the error that ended the watch. */
  readonly done: Promise<RunView>;
  private readonly ctl: AbortController;

  /** @internal Use watchRun. */
  constructor(agents: AgentClient, view: RunView, opts: StreamOptions<RunView, WatchRunResponse> = {}) {
    this.view = view;
    const [ctl, unlink] = linkSignal(opts.signal);
    this.ctl = ctl;
    this.done = follow(
      {
        state: view,
        open: (signal) => agents.watchRun({ runId: view.runId, afterSeq: view.seq }, { signal, timeoutMs: 0 }),
        apply: (ev) => applyRunEvent(view, ev),
        ended: () => isRunEnded(view.status),
      },
      opts,
      this.ctl.signal,
    );
    this.done.then(unlink, unlink);
  }

  /** close stops watching; the run goes on. */
  close(): void {
    this.ctl.abort();
  }
}

/**
 * watchRun watches a run from its first event (or after `view.seq`, to go
 * on from an earlier watch) to its end.
 */
export function watchRun(
  agents: AgentClient,
  runId: string,
  opts?: StreamOptions<RunView, WatchRunResponse> & { view?: RunView },
): RunWatch {
  return new RunWatch(agents, opts?.view ?? newRunView(runId), opts);
}

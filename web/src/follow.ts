// Following a server stream across dropped connections: shared by answers
// (SendMessage, ResumeGeneration) and agent runs (WatchRun).

import { Code, ConnectError } from "@connectrpc/connect";

/** StreamOptions tunes how a stream is followed. */
export interface StreamOptions<S, E> {
  /** Called after each event is applied, with the state and the event. */
  onUpdate?: (state: S, event: E) => void;
  /**
   * Called before reconnecting after a dropped connection, with the
   * attempt (from 1) and the error that ended the last one.
   */
  onReconnect?: (attempt: number, err: ConnectError) => void;
  /**
   * Aborting stops following (the work goes on in the server); the stream's
   * `done` then resolves with the state so far.
   */
  signal?: AbortSignal;
  /** Reconnections in a row without a new event before giving up (4). */
  maxReconnects?: number;
  /** The first pause before reconnecting, doubled each time (250 ms). */
  reconnectDelayMs?: number;
}

/**
 * isReconnectable reports whether an error ended the connection rather
 * than the work: the network failed, the connection was cut, or the
 * server asked to try again. Errors the server meant (not_found,
 * resource_exhausted, ...) end the stream for good.
 */
export function isReconnectable(err: ConnectError): boolean {
  switch (err.code) {
    case Code.Unknown:
    case Code.Unavailable:
    case Code.Canceled:
    case Code.Internal:
      return true;
    case Code.ResourceExhausted:
      // The follower cap: the server has not yet noticed the dropped
      // connection. It says when to try again.
      return retryAfterMs(err) !== undefined;
    default:
      return false;
  }
}

function retryAfterMs(err: ConnectError): number | undefined {
  const v = err.metadata.get("retry-after");
  const n = v === null ? NaN : Number(v);
  return Number.isFinite(n) && n >= 0 && n <= 60 ? n * 1000 : undefined;
}

/** CallbackError carries an exception thrown by an onUpdate callback. */
class CallbackError {
  constructor(readonly cause: unknown) {}
}

/** Follower is what {@link follow} needs from one kind of stream. */
export interface Follower<S, E extends { seq: bigint }> {
  /** The state events are applied to. */
  state: S;
  /** Opens the stream: at the start, or after the last event applied. */
  open: (signal: AbortSignal) => AsyncIterable<E>;
  /** Applies an event; false when it was already applied (a replay). */
  apply: (event: E) => boolean;
  /** Whether the last event has arrived. */
  ended: () => boolean;
}

/**
 * follow reads a stream to its end, reconnecting (with `open`, which
 * resumes after the last event) when the connection drops; it resolves
 * with the final state (or the state so far once signal is aborted) and
 * rejects with the error that ended it.
 */
export async function follow<S, E extends { seq: bigint }>(
  f: Follower<S, E>,
  opts: StreamOptions<S, E>,
  signal: AbortSignal,
): Promise<S> {
  const max = opts.maxReconnects ?? 4;
  let delay = opts.reconnectDelayMs ?? 250;
  let failures = 0;
  for (;;) {
    let progressed = false;
    try {
      for await (const ev of f.open(signal)) {
        if (f.apply(ev)) {
          progressed = true;
          try {
            opts.onUpdate?.(f.state, ev);
          } catch (cbErr) {
            throw new CallbackError(cbErr);
          }
        }
        if (f.ended()) return f.state;
      }
      if (f.ended() || signal.aborted) return f.state;
      // A stream that ends cleanly without its last event was cut by a
      // proxy: resume.
      throw new ConnectError("the stream ended before the last event", Code.Unavailable);
    } catch (e) {
      // The caller's own callback failed: that is its error, not the network's.
      if (e instanceof CallbackError) throw e.cause;
      // Ended, or closed by the caller: the state as it stands.
      if (f.ended() || signal.aborted) return f.state;
      const err = ConnectError.from(e);
      if (!isReconnectable(err)) throw err;
      failures = progressed ? 1 : failures + 1;
      if (progressed) delay = opts.reconnectDelayMs ?? 250;
      if (failures > max) throw err;
      opts.onReconnect?.(failures, err);
      await sleep(Math.max(delay, err.code === Code.ResourceExhausted ? (retryAfterMs(err) ?? 0) : 0), signal);
      delay *= 2;
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * linkSignal returns a controller that parent aborts too, and a function
 * that unlinks it (call it when the stream has ended, so a long-lived
 * parent does not collect one listener per stream).
 */
export function linkSignal(parent?: AbortSignal): [AbortController, () => void] {
  const c = new AbortController();
  if (!parent) return [c, () => {}];
  if (parent.aborted) {
    c.abort(parent.reason);
    return [c, () => {}];
  }
  const onAbort = () => c.abort(parent.reason);
  parent.addEventListener("abort", onAbort, { once: true });
  return [c, () => parent.removeEventListener("abort", onAbort)];
}

/** newRequestId returns a random id for idempotent retries. */
export function newRequestId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

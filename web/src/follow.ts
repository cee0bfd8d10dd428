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
    default:
      return false;
  }
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
          opts.onUpdate?.(f.state, ev);
        }
      }
      if (f.ended() || signal.aborted) return f.state;
      // A stream that ends cleanly without its last event was cut by a
      // proxy: resume.
      throw new ConnectError("the stream ended before the last event", Code.Unavailable);
    } catch (e) {
      const err = ConnectError.from(e);
      // Closed by the caller: the state as it stands.
      if (signal.aborted) return f.state;
      if (!isReconnectable(err)) throw err;
      failures = progressed ? 1 : failures + 1;
      if (progressed) delay = opts.reconnectDelayMs ?? 250;
      if (failures > max) throw err;
      opts.onReconnect?.(failures, err);
      await sleep(delay, signal);
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

/** linkSignal returns a controller aborted by parent too. */
export function linkSignal(parent?: AbortSignal): AbortController {
  const c = new AbortController();
  if (parent) {
    if (parent.aborted) c.abort(parent.reason);
    else parent.addEventListener("abort", () => c.abort(parent.reason), { once: true });
  }
  return c;
}

/** newRequestId returns a random id for idempotent retries. */
export function newRequestId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

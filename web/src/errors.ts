// Errors and rate limits, in words a person can read.

import { Code, ConnectError } from "@connectrpc/connect";

/** RateLimit is what Parley's RateLimit-* and Retry-After headers say. */
export interface RateLimit {
  /** Calls allowed in a burst (RateLimit-Limit). */
  limit: number;
  /** Calls left now (RateLimit-Remaining). */
  remaining: number;
  /** Seconds until the whole burst is available again (RateLimit-Reset). */
  resetSeconds: number;
  /** Seconds to wait before retrying, on a refused call (Retry-After). */
  retryAfterSeconds?: number;
}

/**
 * rateLimitOf reads the rate-limit headers of an answer, or of a
 * ConnectError's metadata; undefined when there are none.
 */
export function rateLimitOf(headers: Headers): RateLimit | undefined {
  const limit = headers.get("ratelimit-limit");
  const remaining = headers.get("ratelimit-remaining");
  if (limit === null || remaining === null) return undefined;
  const out: RateLimit = {
    limit: Number(limit),
    remaining: Number(remaining),
    resetSeconds: Number(headers.get("ratelimit-reset") ?? 0),
  };
  const retry = headers.get("retry-after");
  if (retry !== null) out.retryAfterSeconds = Number(retry);
  return out;
}

/** retryAfterSeconds is the Retry-After an error carries, if any. */
export function retryAfterSeconds(err: unknown): number | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  const v = err.metadata.get("retry-after");
  return v === null ? undefined : Number(v);
}

const what: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "That request was not valid",
  [Code.NotFound]: "Not found",
  [Code.AlreadyExists]: "It already exists",
  [Code.PermissionDenied]: "Not allowed",
  [Code.Unauthenticated]: "You are signed out or your session expired",
  [Code.ResourceExhausted]: "Slow down",
  [Code.FailedPrecondition]: "Not possible right now",
  [Code.Aborted]: "Someone else changed it first",
  [Code.DeadlineExceeded]: "That took too long",
  [Code.Unavailable]: "The service is unavailable",
  [Code.Unimplemented]: "Not supported by this server",
  [Code.Internal]: "Something went wrong on the server",
  [Code.DataLoss]: "Something went wrong on the server",
};

/**
 * describeError turns any error from a Parley call into one sentence for a
 * person: what kind of failure it is, then the server's own explanation
 * (Parley writes those for people, and never puts internals in them).
 */
export function describeError(err: unknown): string {
  if (!(err instanceof ConnectError)) {
    return err instanceof Error ? err.message : String(err);
  }
  if (err.code === Code.Canceled) return "Canceled.";
  if (err.code === Code.Unknown && !err.rawMessage.includes(":")) {
    // fetch failed: no server answer at all.
    return "Cannot reach Parley. Check your connection, then try again.";
  }
  const head = what[err.code] ?? "Error";
  const retry = retryAfterSeconds(err);
  const tail = retry !== undefined && !/retry/i.test(err.rawMessage) ? ` Try again in ${retry}s.` : "";
  const msg = err.rawMessage ? `${head}: ${err.rawMessage}` : head;
  return `${msg.replace(/\.?$/, ".")}${tail}`;
}

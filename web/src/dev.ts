// `parley dev`'s token endpoint, as a TokenSource.

import type { TokenSource } from "./transport.js";

/** DevSession is what GET /dev/token answers (Supabase's session shape). */
export interface DevSession {
  access_token: string;
  token_type: string;
  expires_in: number;
  expires_at: number;
  user: { id: string };
}

/** DevTokenOptions selects whose token `parley dev` signs. */
export interface DevTokenOptions {
  /** The user id (a UUID); the dev user when omitted. */
  sub?: string;
  /** The token's lifetime as a Go duration, e.g. "15m" (1h by default). */
  ttl?: string;
  fetch?: typeof globalThis.fetch;
}

/** fetchDevSession asks a `parley dev` server for a fresh token. */
export async function fetchDevSession(baseUrl: string, opts: DevTokenOptions & { expired?: boolean } = {}): Promise<DevSession> {
  const u = new URL(`${baseUrl.replace(/\/+$/, "")}/dev/token`);
  if (opts.sub) u.searchParams.set("sub", opts.sub);
  if (opts.ttl) u.searchParams.set("ttl", opts.ttl);
  if (opts.expired) u.searchParams.set("expired", "true");
  const res = await (opts.fetch ?? globalThis.fetch)(u);
  if (!res.ok) {
    throw new Error(`parley dev did not hand out a token (HTTP ${res.status}): ${(await res.text()).trim()}`);
  }
  return (await res.json()) as DevSession;
}

/**
 * devTokenSource is a TokenSource backed by `parley dev`'s /dev/token: it
 * keeps the token until a minute before it expires, and fetches a new one
 * when asked to refresh. For development only: production tokens come from
 * Supabase Auth.
 */
export function devTokenSource(baseUrl: string, opts: DevTokenOptions = {}): TokenSource {
  let session: DevSession | undefined;
  // One fetch at a time: concurrent first calls share it.
  let pending: Promise<DevSession> | undefined;
  return async ({ forceRefresh }) => {
    if (forceRefresh || !session || session.expires_at * 1000 - Date.now() < 60_000) {
      pending ??= fetchDevSession(baseUrl, opts).finally(() => (pending = undefined));
      session = await pending;
    }
    return session.access_token;
  };
}

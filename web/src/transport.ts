// The transport: which protocol to speak, where, and with whose token.

import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { rateLimitOf, type RateLimit } from "./errors.js";

/**
 * TokenSource returns the current Supabase access token, or nothing to call
 * without one. It is asked before every call; when the server answers
 * `unauthenticated`, it is asked once more with `forceRefresh: true` and the
 * call is retried with the new token. With supabase-js:
 *
 * ```ts
 * const getToken: TokenSource = async ({ forceRefresh }) => {
 *   const { data } = forceRefresh
 *     ? await supabase.auth.refreshSession()
 *     : await supabase.auth.getSession();
 *   return data.session?.access_token;
 * };
 * ```
 */
export type TokenSource = (options: { forceRefresh: boolean }) =>
  | string
  | null
  | undefined
  | Promise<string | null | undefined>;

/** ParleyTransportOptions configures {@link createParleyTransport}. */
export interface ParleyTransportOptions {
  /** Where Parley is served, e.g. "https://api.example.com" or "http://localhost:8080". */
  baseUrl: string;
  /** The caller's access token; omit for public calls only. */
  getToken?: TokenSource;
  /**
   * "connect" (the default) speaks the Connect protocol, JSON unless
   * `binary` is set; "grpc-web" speaks gRPC-Web, binary unless `binary` is false.
   */
  protocol?: "connect" | "grpc-web";
  /** Protobuf binary instead of JSON on the wire. */
  binary?: boolean;
  /**
   * Send side-effect-free reads (GetConversation, ListMessages, ...) as HTTP
   * GET over the Connect protocol; true by default.
   */
  useHttpGet?: boolean;
  /** Called with the rate-limit headers of every answer that carries them. */
  onRateLimit?: (limit: RateLimit, procedure: string) => void;
  /** A fetch to use instead of globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
  /** A default deadline for every call, in milliseconds; none by default. */
  timeoutMs?: number;
  /** More interceptors, run outside the token and rate-limit ones. */
  interceptors?: Interceptor[];
}

/**
 * createParleyTransport returns a connect-web transport for Parley: the
 * chosen protocol, the bearer token from `getToken` on every call (with one
 * refresh and retry on `unauthenticated`, for unary calls and for streams
 * that failed before their first message), and rate-limit reporting.
 */
export function createParleyTransport(options: ParleyTransportOptions): Transport {
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (options.onRateLimit) {
    interceptors.push(rateLimitInterceptor(options.onRateLimit));
  }
  if (options.getToken) {
    interceptors.push(bearerInterceptor(options.getToken));
  }
  const common = {
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    interceptors,
    fetch: options.fetch,
    defaultTimeoutMs: options.timeoutMs,
  };
  if (options.protocol === "grpc-web") {
    return createGrpcWebTransport({ ...common, useBinaryFormat: options.binary ?? true });
  }
  return createConnectTransport({
    ...common,
    useBinaryFormat: options.binary ?? false,
    useHttpGet: options.useHttpGet ?? true,
  });
}

/** isUnauthenticated reports whether err is Connect's `unauthenticated`. */
function isUnauthenticated(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unauthenticated;
}

function bearerInterceptor(getToken: TokenSource): Interceptor {
  // Calls refused at the same moment share one refresh: with refresh-token
  // rotation, a second refresh of the same session could revoke it.
  let refreshing: Promise<string | null | undefined> | undefined;
  const refreshOnce = () => {
    refreshing ??= Promise.resolve()
      .then(() => getToken({ forceRefresh: true }))
      .finally(() => (refreshing = undefined));
    return refreshing;
  };
  return (next) => async (req) => {
    let token: string | null | undefined;
    try {
      token = await getToken({ forceRefresh: false });
    } catch (err) {
      throw new ConnectError(`could not get an access token: ${err instanceof Error ? err.message : String(err)}`, Code.Unauthenticated, undefined, undefined, err);
    }
    const authorize = (t: string | null | undefined) => {
      if (t) req.header.set("Authorization", `Bearer ${t}`);
    };
    // After err: whether a fresh token is now on the request, so the call
    // may be sent again. Only for unauthenticated, and only when the source
    // has a better token (a failing source leaves the server's answer).
    const reauthorize = async (err: unknown) => {
      if (!isUnauthenticated(err) || req.signal.aborted) return false;
      let fresh: string | null | undefined;
      try {
        fresh = await refreshOnce();
      } catch {
        return false;
      }
      if (!fresh || fresh === token) return false;
      authorize(fresh);
      return true;
    };
    authorize(token);
    if (!req.stream) {
      try {
        return await next(req);
      } catch (err) {
        if (!(await reauthorize(err))) throw err;
        return await next(req);
      }
    }
    // Parley's streams are server streams: one request message, which is
    // kept so that the call can be sent again.
    const sent: unknown[] = [];
    for await (const m of req.message) sent.push(m);
    const call = () => next({ ...req, message: iterate(sent) } as typeof req);
    let res;
    try {
      res = await call();
    } catch (err) {
      if (!(await reauthorize(err))) throw err;
      return await call();
    }
    if (!res.stream) return res;
    const first = res;
    // Connect and gRPC-Web answer a stream's auth failure in its last
    // frame: refresh and call again only when nothing had arrived yet. The
    // retry's trailers are copied to the response the caller holds; its
    // headers are those of the first attempt.
    async function* messages() {
      let received = false;
      try {
        for await (const m of first.message) {
          received = true;
          yield m;
        }
      } catch (err) {
        if (received || !(await reauthorize(err))) throw err;
        const again = await call();
        if (!again.stream) throw err;
        try {
          yield* again.message;
        } finally {
          again.trailer.forEach((v, k) => first.trailer.set(k, v));
        }
      }
    }
    return { ...first, message: messages() };
  };
}

async function* iterate<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

function rateLimitInterceptor(report: (limit: RateLimit, procedure: string) => void): Interceptor {
  return (next) => async (req) => {
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    try {
      const res = await next(req);
      const limit = rateLimitOf(res.header);
      if (limit) report(limit, procedure);
      return res;
    } catch (err) {
      const limit = err instanceof ConnectError ? rateLimitOf(err.metadata) : undefined;
      if (limit) report(limit, procedure);
      throw err;
    }
  };
}

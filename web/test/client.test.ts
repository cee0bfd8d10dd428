// The TypeScript client against a real `parley dev`, over the Connect
// protocol with JSON and over gRPC-Web with protobuf binary.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import {
  Code,
  ConnectError,
  MessageStatus,
  RunStatus,
  StepStatus,
  createParley,
  describeError,
  devTokenSource,
  editMessage,
  fetchDevSession,
  resumeAnswer,
  retryAfterSeconds,
  sendMessage,
  watchRun,
  type Parley,
  type ParleyTransportOptions,
  type RateLimit,
  type TokenSource,
} from "../src/index.js";
import { fromBinary, fromJsonString } from "@bufbuild/protobuf";
import { ResumeGenerationRequestSchema, type ResumeGenerationRequest } from "../src/gen/parley/v1/chat_pb.js";
import { randomUser, repoRoot, startParley, type DevServer } from "./harness.js";

let server: DevServer;

before(async () => {
  server = await startParley({ OFFLINE_WORD_DELAY: "25ms", RATE_LIMIT_AGENT: "2" });
});
after(async () => {
  await server?.stop();
});

const transports: { name: string; options: Pick<ParleyTransportOptions, "protocol" | "binary"> }[] = [
  { name: "Connect, JSON", options: { protocol: "connect", binary: false } },
  { name: "gRPC-Web, binary", options: { protocol: "grpc-web", binary: true } },
];

/** A client for a new user, with the given transport options. */
function client(options: Partial<ParleyTransportOptions> = {}, user = randomUser()): Parley {
  return createParley({ baseUrl: server.url, getToken: devTokenSource(server.url, { sub: user }), ...options });
}

/** A request as it went on the wire. */
interface WireCall {
  path: string;
  body: Uint8Array;
}

/**
 * wire is a fetch that records every request, and breaks off its first
 * response to a path ending in `cut.suffix` after `cut.chunks` body chunks,
 * as when a phone changes networks mid-answer.
 */
function wire(cut?: { suffix: string; chunks: number }): { fetch: typeof fetch; calls: WireCall[]; cuts: () => number } {
  let cuts = 0;
  const calls: WireCall[] = [];
  const f: typeof fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const body = init?.body instanceof Uint8Array ? init.body : new Uint8Array();
    calls.push({ path: new URL(url).pathname, body });
    const res = await fetch(input, init);
    if (!cut || cuts > 0 || !url.endsWith(cut.suffix) || !res.body) return res;
    cuts++;
    const reader = res.body.getReader();
    let n = 0;
    const cutBody = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (n++ >= cut.chunks) {
          await reader.cancel();
          ctl.error(new TypeError("network connection lost"));
          return;
        }
        const r = await reader.read();
        if (r.done) ctl.close();
        else ctl.enqueue(r.value);
      },
    });
    return new Response(cutBody, { status: res.status, headers: res.headers });
  };
  return { fetch: f, calls, cuts: () => cuts };
}

/** resumeRequests decodes the ResumeGeneration requests among calls. */
function resumeRequests(calls: WireCall[], binary: boolean): ResumeGenerationRequest[] {
  return calls
    .filter((c) => c.path === "/parley.v1.ChatService/ResumeGeneration")
    .map((c) => {
      const payload = c.body.subarray(5); // the envelope: a flag byte and a length
      return binary
        ? fromBinary(ResumeGenerationRequestSchema, payload)
        : fromJsonString(ResumeGenerationRequestSchema, new TextDecoder().decode(payload));
    });
}

async function savedAnswer(p: Parley, conversationId: string, messageId: string) {
  const { messages } = await p.chat.listMessages({ conversationId, pageSize: 100 });
  const m = messages.find((x) => x.id === messageId);
  assert.ok(m, `message ${messageId} is not on the active branch`);
  return m;
}

async function expectCode(p: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ConnectError, `not a ConnectError: ${e}`);
    assert.equal(e.code, code, `code ${Code[e.code]} (${e.rawMessage}); want ${Code[code]}`);
    return e;
  }
  assert.fail(`the call succeeded; want ${Code[code]}`);
}

for (const { name, options } of transports) {
  describe(name, () => {
    test("conversations: create, read (over GET), update, list, delete", async () => {
      const methods: string[] = [];
      const recording: typeof fetch = (input, init) => {
        methods.push(`${init?.method ?? "GET"} ${new URL(String(input instanceof Request ? input.url : input)).pathname}`);
        return fetch(input, init);
      };
      const p = client({ ...options, fetch: recording });
      const requestId = crypto.randomUUID();
      const { conversation } = await p.chat.createConversation({ title: "Trip", systemPrompt: "Answer briefly.", requestId });
      assert.ok(conversation?.id);
      const again = await p.chat.createConversation({ title: "Trip", requestId });
      assert.equal(again.conversation?.id, conversation.id, "a retried create with the same request_id made another conversation");

      const got = await p.chat.getConversation({ conversationId: conversation.id });
      assert.equal(got.conversation?.systemPrompt, "Answer briefly.");
      // Connect sends side-effect-free reads as GET; gRPC-Web always POSTs.
      const read = options.protocol === "connect" ? "GET" : "POST";
      assert.equal(methods.at(-1), `${read} /parley.v1.ChatService/GetConversation`);
      const upd = await p.chat.updateConversation({ conversationId: conversation.id, title: "Lisbon in May" });
      assert.equal(upd.conversation?.title, "Lisbon in May");
      const list = await p.chat.listConversations({ pageSize: 10 });
      assert.deepEqual(list.conversations.map((c) => c.title), ["Lisbon in May"]);

      await p.chat.deleteConversation({ conversationId: conversation.id });
      await expectCode(p.chat.getConversation({ conversationId: conversation.id }), Code.NotFound);
      // Another user's id answers not_found too.
      const { conversation: mine } = await p.chat.createConversation({ title: "mine" });
      await expectCode(client(options).chat.getConversation({ conversationId: mine!.id }), Code.NotFound);
    });

    test("an error carries its code and a message a person can read", async () => {
      const p = client(options);
      const err = await expectCode(p.chat.getConversation({ conversationId: "not-a-uuid" }), Code.InvalidArgument);
      assert.match(err.rawMessage, /conversation_id/);
      assert.match(describeError(err), /^That request was not valid: .*conversation_id/);
      const anon = createParley({ baseUrl: server.url, ...options });
      await expectCode(anon.chat.listConversations({}), Code.Unauthenticated);
    });

    test("an answer streams delta by delta and is saved as streamed", async () => {
      const p = client(options);
      const { conversation } = await p.chat.createConversation({});
      const seqs: bigint[] = [];
      let deltas = "";
      const s = sendMessage(p.chat, { conversationId: conversation!.id, content: "I feel tired today" }, {
        onUpdate: (_a, ev) => {
          seqs.push(ev.seq);
          if (ev.event.case === "delta") deltas += ev.event.value.text;
        },
      });
      const a = await s.done;
      assert.equal(a.status, MessageStatus.COMPLETED);
      assert.ok(seqs.length > 4, `only ${seqs.length} events`);
      assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), "seq does not grow by one from 1");
      assert.equal(a.userMessage?.content, "I feel tired today");
      const saved = await savedAnswer(p, conversation!.id, a.messageId);
      assert.equal(saved.content, deltas, "the saved answer differs from the deltas streamed");
      assert.equal(a.text, saved.content);
      assert.equal(saved.status, MessageStatus.COMPLETED);
    });

    test("a dropped connection is resumed after the last event, nothing lost or repeated", async () => {
      const user = randomUser();
      const cut = wire({ suffix: "/parley.v1.ChatService/SendMessage", chunks: 3 });
      const p = client({ ...options, fetch: cut.fetch }, user);
      const { conversation } = await p.chat.createConversation({});
      let deltas = "";
      const reconnects: bigint[] = [];
      const s = sendMessage(p.chat, { conversationId: conversation!.id, content: "My mother never listens to me" }, {
        onUpdate: (_a, ev) => {
          if (ev.event.case === "delta") deltas += ev.event.value.text;
        },
        onReconnect: () => reconnects.push(s.answer.seq),
      });
      const a = await s.done;
      assert.equal(cut.cuts(), 1, "the fetch was never cut: the test proves nothing");
      assert.equal(reconnects.length, 1);
      // The reconnection resumed after the last event received, rather than
      // sending the message again or replaying from the start.
      const resumed = resumeRequests(cut.calls, options.protocol === "grpc-web");
      assert.equal(resumed.length, 1, JSON.stringify(cut.calls.map((c) => c.path)));
      assert.equal(resumed[0]!.generationId, a.generationId);
      assert.ok(reconnects[0]! > 0n, "the cut came before the first event");
      assert.equal(resumed[0]!.afterSeq, reconnects[0]);
      assert.equal(cut.calls.filter((c) => c.path.endsWith("/SendMessage")).length, 1);
      const saved = await savedAnswer(p, conversation!.id, a.messageId);
      assert.equal(saved.content, deltas, "text was lost or repeated across the reconnection");
      assert.equal(a.status, MessageStatus.COMPLETED);
    });

    test("a stream closed by the client resumes from its seq with resumeAnswer", async () => {
      const rec = wire();
      const p = client({ ...options, fetch: rec.fetch });
      const { conversation } = await p.chat.createConversation({});
      let deltas = "";
      const first = sendMessage(p.chat, { conversationId: conversation!.id, content: "Everyone at work ignores my ideas" }, {
        onUpdate: (a, ev) => {
          if (ev.event.case === "delta") {
            deltas += ev.event.value.text;
            if (a.text.split(" ").length >= 3) first.close();
          }
        },
      });
      const partial = await first.done;
      assert.equal(partial.status, MessageStatus.STREAMING, "the answer ended before the client closed its stream");
      const seqAtClose = partial.seq;
      const rest = resumeAnswer(p.chat, partial.generationId, {
        answer: partial,
        onUpdate: (_a, ev) => {
          if (ev.event.case === "delta") deltas += ev.event.value.text;
        },
      });
      const a = await rest.done;
      const resumed = resumeRequests(rec.calls, options.protocol === "grpc-web");
      assert.equal(resumed.length, 1);
      assert.equal(resumed[0]!.afterSeq, seqAtClose, "resumeAnswer did not ask for the events after the answer's seq");
      const saved = await savedAnswer(p, conversation!.id, a.messageId);
      assert.equal(saved.content, deltas);
      assert.equal(a.text, saved.content);
    });

    test("stop keeps the text so far as STOPPED", async () => {
      const p = client(options);
      const { conversation } = await p.chat.createConversation({});
      let stopped: Promise<unknown> | undefined;
      const s = sendMessage(p.chat, { conversationId: conversation!.id, content: "Tell me about dreams and what they mean to people" }, {
        onUpdate: (_a, ev) => {
          if (ev.event.case === "delta") stopped ??= s.stop();
        },
      });
      const a = await s.done;
      const stoppedMessage = (await stopped) as { status: MessageStatus } | undefined;
      assert.equal(stoppedMessage?.status, MessageStatus.STOPPED);
      assert.equal(a.status, MessageStatus.STOPPED);
      const saved = await savedAnswer(p, conversation!.id, a.messageId);
      assert.equal(saved.status, MessageStatus.STOPPED);
      assert.equal(saved.content, a.text);
    });

    test("an edit adds a branch; SelectBranch switches back", async () => {
      const p = client(options);
      const { conversation } = await p.chat.createConversation({});
      const id = conversation!.id;
      const first = await sendMessage(p.chat, { conversationId: id, content: "I like cats" }).done;
      const edited = await editMessage(p.chat, { messageId: first.userMessage!.id, content: "I like dogs" }).done;
      assert.equal(edited.status, MessageStatus.COMPLETED);
      let { messages } = await p.chat.listMessages({ conversationId: id });
      assert.equal(messages[0]?.content, "I like dogs");
      assert.equal(messages[0]?.siblingCount, 2);
      assert.equal(messages[0]?.siblingIndex, 1);
      ({ messages } = await p.chat.selectBranch({ conversationId: id, messageId: messages[0]!.siblingIds[0]! }));
      assert.deepEqual(messages.map((m) => m.content), ["I like cats", first.text]);
    });

    test("an answer that writes an artifact streams the document; the artifact and its versions read back", async () => {
      const p = client(options);
      const { conversation } = await p.chat.createConversation({});
      const a = await sendMessage(p.chat, { conversationId: conversation!.id, content: "Write a packing list for Lisbon" }).done;
      const call = a.toolCalls.find((c) => c.name === "create_artifact");
      assert.ok(call?.artifact, `no artifact saved: ${JSON.stringify(a.toolCalls)}`);
      assert.ok(call.done && !call.error);
      const { artifact, version } = await p.artifacts.getArtifact({ artifactId: call.artifact.artifactId });
      assert.equal(artifact?.title, call.artifact.title);
      assert.equal(version?.content, call.content, "the document streamed differs from the one saved");
      const { versions } = await p.artifacts.listArtifactVersions({ artifactId: call.artifact.artifactId });
      assert.deepEqual(versions.map((v) => v.version), [1]);
    });

    test("rate-limit headers are read from every answer, and the refusal says when to retry", async () => {
      const seen: { limit: RateLimit; procedure: string }[] = [];
      const p = client({ ...options, onRateLimit: (limit, procedure) => seen.push({ limit, procedure }) });
      await p.users.getMe({});
      await p.users.getMe({});
      const me = seen.filter((s) => s.procedure === "/parley.v1.UserService/GetMe");
      assert.equal(me.length, 2, JSON.stringify(seen));
      assert.ok(me[0]!.limit.limit > 0);
      assert.equal(me[1]!.limit.remaining, me[0]!.limit.remaining - 1);

      // RATE_LIMIT_AGENT is 2 a minute on this server.
      await p.agents.startRun({ goal: "Plan a weekend in Porto" });
      await p.agents.startRun({ goal: "Plan a weekend in Braga" });
      const err = await expectCode(p.agents.startRun({ goal: "Plan a weekend in Faro" }), Code.ResourceExhausted);
      assert.ok((retryAfterSeconds(err) ?? 0) > 0, "no Retry-After on the refusal");
      const refused = seen.at(-1)!;
      assert.equal(refused.procedure, "/parley.v1.AgentService/StartRun");
      assert.equal(refused.limit.remaining, 0);
      assert.ok((refused.limit.retryAfterSeconds ?? 0) > 0);
      assert.match(describeError(err), /^Slow down: rate limit exceeded/);
    });

    test("an expired token is refreshed once and the call retried, for calls and streams", async () => {
      const user = randomUser();
      const asked: boolean[] = [];
      // The first token has expired; a refresh gets a good one.
      const getToken: TokenSource = async ({ forceRefresh }) => {
        asked.push(forceRefresh);
        return (await fetchDevSession(server.url, { sub: user, expired: asked.length === 1 })).access_token;
      };
      const p = createParley({ baseUrl: server.url, getToken, ...options });
      const { conversation } = await p.chat.createConversation({ title: "refresh" });
      assert.deepEqual(asked, [false, true]);

      asked.length = 0;
      const a = await sendMessage(p.chat, { conversationId: conversation!.id, content: "Hello there" }).done;
      assert.equal(a.status, MessageStatus.COMPLETED);
      assert.deepEqual(asked, [false, true], "the stream did not refresh its token exactly once");

      // A source that only has expired tokens is asked twice, not forever.
      let calls = 0;
      const stale = createParley({
        baseUrl: server.url,
        ...options,
        getToken: async () => (calls++, (await fetchDevSession(server.url, { sub: user, expired: true })).access_token),
      });
      await expectCode(stale.chat.listConversations({}), Code.Unauthenticated);
      assert.equal(calls, 2);
      calls = 0;
      await expectCode(sendMessage(stale.chat, { conversationId: conversation!.id, content: "again" }).done, Code.Unauthenticated);
      assert.equal(calls, 2);
    });

    test("a failing callback or token source ends the call with its own error, without retries", async () => {
      const rec = wire();
      const p = client({ ...options, fetch: rec.fetch });
      const { conversation } = await p.chat.createConversation({});
      const s = sendMessage(p.chat, { conversationId: conversation!.id, content: "Hello" }, {
        onUpdate: () => {
          throw new Error("the page's renderer broke");
        },
      });
      await assert.rejects(s.done, /the page's renderer broke/);
      assert.equal(rec.calls.filter((c) => c.path.endsWith("/ResumeGeneration")).length, 0, "a callback error was taken for a network error");

      const broken = createParley({ baseUrl: server.url, ...options, getToken: () => Promise.reject(new Error("session storage is gone")) });
      const err = await expectCode(broken.chat.listConversations({}), Code.Unauthenticated);
      assert.match(err.rawMessage, /could not get an access token: session storage is gone/);
    });

    test("an agent run is watched to its end, across a dropped connection", async () => {
      const cut = wire({ suffix: "/parley.v1.AgentService/WatchRun", chunks: 4 });
      const p = client({ ...options, fetch: cut.fetch });
      const { conversation } = await p.chat.createConversation({ title: "agent" });
      const { run } = await p.agents.startRun({ goal: "Write a short guide to Lisbon's trams", conversationId: conversation!.id });
      const w = watchRun(p.agents, run!.id);
      const v = await w.done;
      assert.equal(cut.cuts(), 1, "the watch was never cut: the test proves nothing");
      assert.equal(v.status, RunStatus.SUCCEEDED, v.run?.error);
      assert.deepEqual(v.steps.map((s) => s.status), Array(5).fill(StepStatus.SUCCEEDED));
      assert.ok(v.run?.summary);
      const saved = await p.agents.getRun({ runId: run!.id });
      assert.equal(saved.run?.lastSeq, v.seq, "the watch missed events");
      assert.equal(saved.run?.summary, v.run?.summary);
    });
  });
}

test("the README's TypeScript example is web/examples/quickstart.ts, and it runs as written", async () => {
  const source = readFileSync(join(repoRoot, "web/examples/quickstart.ts"), "utf8");
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const m = /<!-- ts-example:start -->\n```ts\n([\s\S]*?)```\n<!-- ts-example:end -->/.exec(readme);
  assert.ok(m, "README.md has no ts-example block");
  assert.equal(m[1], source, "the README's TypeScript example differs from web/examples/quickstart.ts");

  const { stdout } = await promisify(execFile)(process.execPath, [join(repoRoot, "web/.build/examples/quickstart.js")], {
    env: { ...process.env, PARLEY_URL: server.url },
    timeout: 60_000,
  });
  assert.match(stdout, /saved as [0-9a-f-]{36}, \d+ tokens/);
  assert.match(stdout, /That request was not valid: .*conversation_id/);
  assert.match(stdout, /run succeeded: Summary: /);
});

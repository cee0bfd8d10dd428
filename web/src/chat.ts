// Answers: SendMessage, EditMessage, RegenerateMessage and ResumeGeneration
// streams folded into one message, resumed after a dropped connection.

import type { MessageInitShape } from "@bufbuild/protobuf";

import type { ChatClient } from "./clients.js";
import { follow, linkSignal, newRequestId, type StreamOptions } from "./follow.js";
import {
  MessageStatus,
  type EditMessageRequestSchema,
  type Message,
  type RegenerateMessageRequestSchema,
  type SavedArtifact,
  type SendMessageRequestSchema,
  type SendMessageResponse,
  type Usage,
} from "./gen/parley/v1/chat_pb.js";

/** ToolCall is one tool call of an answer, as it streams. */
export interface ToolCall {
  callId: string;
  /** The tool, e.g. "create_artifact". */
  name: string;
  /** The document the call is writing, as far as it has arrived. */
  content: string;
  /** The artifact version the call saved, once it has. */
  artifact?: SavedArtifact;
  /** Why the call failed, as the model was told. */
  error?: string;
  /** Whether the call has ended. */
  done: boolean;
}

/** Answer is an assistant message being streamed, folded from its events. */
export interface Answer {
  /** The generation, for stop and resume; empty until the first event. */
  generationId: string;
  /** The assistant message that holds the answer. */
  messageId: string;
  /** The user message being answered, as saved. */
  userMessage?: Message;
  /** The model writing the answer. */
  model: string;
  /** The text so far. */
  text: string;
  /** Tool calls, in the order they started. */
  toolCalls: ToolCall[];
  /** Tokens billed, once known. */
  usage?: Usage;
  /** A title the server wrote for a new conversation. */
  title?: string;
  /** The seq of the last event applied; resume after it. */
  seq: bigint;
  /** STREAMING until the end; then the saved message's status. */
  status: MessageStatus;
  /** Whether the last event (`completed`) has arrived. */
  ended: boolean;
  /** The saved assistant message, at the end. */
  message?: Message;
}

/** newAnswer returns the state of an answer before its first event. */
export function newAnswer(): Answer {
  return { generationId: "", messageId: "", model: "", text: "", toolCalls: [], seq: 0n, status: MessageStatus.STREAMING, ended: false };
}

/**
 * applyAnswerEvent folds one stream event into an answer. Events at or
 * before the answer's seq were applied already (a resumed stream can
 * replay them) and are ignored: it returns false for those.
 */
export function applyAnswerEvent(a: Answer, ev: SendMessageResponse): boolean {
  if (ev.seq <= a.seq) return false;
  a.seq = ev.seq;
  const e = ev.event;
  switch (e.case) {
    case "started":
      a.generationId = e.value.generationId;
      a.messageId = e.value.assistantMessageId;
      a.userMessage = e.value.userMessage;
      a.model = e.value.model;
      break;
    case "delta":
      a.text += e.value.text;
      break;
    case "usage":
      a.usage = e.value;
      break;
    case "title":
      a.title = e.value.title;
      break;
    case "toolCall":
      toolCall(a, e.value.callId, e.value.name);
      break;
    case "artifactDelta":
      toolCall(a, e.value.callId, "").content += e.value.text;
      break;
    case "toolResult": {
      const c = toolCall(a, e.value.callId, e.value.name);
      c.done = true;
      c.artifact = e.value.artifact;
      if (e.value.error) c.error = e.value.error;
      break;
    }
    case "completed": {
      // The saved message is the truth: it replaces what streamed (a
      // replay from the database sends only this event).
      a.ended = true;
      const m = e.value.message;
      if (m) {
        a.message = m;
        a.status = m.status;
        a.text = m.content;
        a.messageId ||= m.id;
        a.generationId ||= m.generationId;
        a.model ||= m.model;
        a.usage ??= m.usage;
        for (const u of m.toolUses) {
          const c = toolCall(a, u.callId, u.name);
          c.done = true;
          c.artifact ??= u.artifact;
          if (u.isError) c.error ??= u.result;
        }
      } else {
        a.status = MessageStatus.COMPLETED;
      }
      break;
    }
  }
  return true;
}

function toolCall(a: Answer, callId: string, name: string): ToolCall {
  let c = a.toolCalls.find((t) => t.callId === callId);
  if (!c) {
    c = { callId, name, content: "", done: false };
    a.toolCalls.push(c);
  } else if (name && !c.name) {
    c.name = name;
  }
  return c;
}

/** isStreaming reports whether an answer has not ended yet. */
export function isStreaming(a: Answer): boolean {
  return !a.ended;
}

/**
 * AnswerStream follows one answer to its end, reconnecting through
 * ResumeGeneration when the connection drops. Create one with
 * {@link sendMessage}, {@link editMessage}, {@link regenerateMessage} or
 * {@link resumeAnswer}.
 */
export class AnswerStream {
  /** The answer so far; updated in place as events arrive. */
  readonly answer: Answer;
  /** Resolves with the ended (or, after close, partial) answer; rejects with the error that ended the stream. */
  readonly done: Promise<Answer>;
  private readonly ctl: AbortController;
  private readonly chat: ChatClient;
  private startedResolve!: () => void;
  private readonly started: Promise<void>;

  /** @internal Use sendMessage and its siblings. */
  constructor(
    chat: ChatClient,
    first: (signal: AbortSignal) => AsyncIterable<SendMessageResponse>,
    opts: StreamOptions<Answer, SendMessageResponse> = {},
    answer: Answer = newAnswer(),
  ) {
    this.chat = chat;
    this.answer = answer;
    const [ctl, unlink] = linkSignal(opts.signal);
    this.ctl = ctl;
    this.started = new Promise((resolve) => (this.startedResolve = resolve));
    if (answer.generationId) this.startedResolve();
    const open = (signal: AbortSignal) =>
      // Before the first event the call is sent again: its
      // client_message_id attaches it to the first attempt's answer.
      this.answer.generationId
        ? chat.resumeGeneration({ generationId: this.answer.generationId, afterSeq: this.answer.seq }, { signal, timeoutMs: 0 })
        : first(signal);
    this.done = follow(
      {
        state: this.answer,
        open,
        apply: (ev) => {
          const applied = applyAnswerEvent(this.answer, ev);
          if (this.answer.generationId) this.startedResolve();
          return applied;
        },
        ended: () => !isStreaming(this.answer),
      },
      opts,
      this.ctl.signal,
    );
    // The caller awaits done; this keeps an ignored failure from being unhandled.
    this.done.then(unlink, unlink);
  }

  /**
   * stop asks the server to stop the answer (billing stops; the text so far
   * is kept as STOPPED); the stream then ends with the saved message. It
   * waits for the answer's first event, which names the generation; after
   * close(), or when the stream failed before that event, there is nothing
   * it can name and it returns undefined.
   */
  async stop(): Promise<Message | undefined> {
    await Promise.race([this.started, this.done.then(() => undefined, () => undefined)]);
    if (!this.answer.generationId || !isStreaming(this.answer)) return this.answer.message;
    const res = await this.chat.stopGeneration({ generationId: this.answer.generationId });
    return res.message;
  }

  /**
   * close stops following: `done` resolves with the answer so far, still
   * STREAMING if it had not ended. The answer goes on in the server and can
   * be followed again with {@link resumeAnswer}.
   */
  close(): void {
    this.ctl.abort();
  }
}

type SendInit = MessageInitShape<typeof SendMessageRequestSchema>;
type EditInit = MessageInitShape<typeof EditMessageRequestSchema>;
type RegenerateInit = MessageInitShape<typeof RegenerateMessageRequestSchema>;

/**
 * sendMessage sends a user message and follows its answer. A
 * client_message_id is chosen when the request has none, so a call sent
 * again after a dropped connection attaches to the same answer.
 */
export function sendMessage(chat: ChatClient, req: SendInit, opts?: StreamOptions<Answer, SendMessageResponse>): AnswerStream {
  const r = { ...req, clientMessageId: req.clientMessageId || newRequestId() };
  return new AnswerStream(chat, (signal) => chat.sendMessage(r, { signal, timeoutMs: 0 }), opts);
}

/** editMessage writes a new version of a user message (a new branch) and follows its answer. */
export function editMessage(chat: ChatClient, req: EditInit, opts?: StreamOptions<Answer, SendMessageResponse>): AnswerStream {
  const r = { ...req, clientMessageId: req.clientMessageId || newRequestId() };
  return new AnswerStream(chat, (signal) => chat.editMessage(r, { signal, timeoutMs: 0 }), opts);
}

/** regenerateMessage writes an answer again (a new branch) and follows it. */
export function regenerateMessage(chat: ChatClient, req: RegenerateInit, opts?: StreamOptions<Answer, SendMessageResponse>): AnswerStream {
  const r = { ...req, clientMessageId: req.clientMessageId || newRequestId() };
  return new AnswerStream(chat, (signal) => chat.regenerateMessage(r, { signal, timeoutMs: 0 }), opts);
}

/**
 * resumeAnswer follows a generation that is already running: after a page
 * reload (afterSeq 0 replays it all), or after a stream the caller closed
 * (pass its answer to go on from its seq).
 */
export function resumeAnswer(
  chat: ChatClient,
  generationId: string,
  opts?: StreamOptions<Answer, SendMessageResponse> & { answer?: Answer },
): AnswerStream {
  const answer = opts?.answer ?? newAnswer();
  answer.generationId ||= generationId;
  return new AnswerStream(chat, (signal) => chat.resumeGeneration({ generationId, afterSeq: answer.seq }, { signal, timeoutMs: 0 }), opts, answer);
}

// The Parley chat page: conversations, streamed answers that survive a
// reload, edits and branches, artifacts and their versions, agent runs.
// Plain DOM, no framework; all text goes in through textContent.

import {
  Code,
  ConnectError,
  MessageStatus,
  RunStatus,
  StepName,
  StepStatus,
  createParley,
  describeError,
  devTokenSource,
  editMessage,
  isRunEnded,
  regenerateMessage,
  resumeAnswer,
  sendMessage,
  watchRun,
  Role,
  type Answer,
  type AnswerStream,
  type Message,
  type Parley,
  type RunView,
  type SavedArtifact,
  type SendMessageResponse,
  type StreamOptions,
  type TokenSource,
} from "../src/index.js";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const store = {
  // The API the saved session belongs to. ?api= in the page's URL only
  // pre-fills the sign-in form: a link must not send a saved token to a
  // server of its choosing (see forgetSessionForOtherApi).
  get api() {
    return localStorage.getItem("parley.api") ?? new URLSearchParams(location.search).get("api") ?? "http://localhost:8080";
  },
  set api(v: string) {
    localStorage.setItem("parley.api", v);
  },
  get token() {
    return localStorage.getItem("parley.token");
  },
  set token(v: string | null) {
    if (v === null) localStorage.removeItem("parley.token");
    else localStorage.setItem("parley.token", v);
  },
  get dev() {
    return localStorage.getItem("parley.dev") === "1";
  },
  set dev(v: boolean) {
    if (v) localStorage.setItem("parley.dev", "1");
    else localStorage.removeItem("parley.dev");
  },
  get conversation() {
    return localStorage.getItem("parley.conversation");
  },
  set conversation(v: string | null) {
    if (v === null) localStorage.removeItem("parley.conversation");
    else localStorage.setItem("parley.conversation", v);
  },
};

let parley: Parley | undefined;
let conversationId: string | null = null;
let messages: Message[] = [];
let live: AnswerStream | undefined;
const busyText = "Wait for the answer to finish, or stop it.";
// Bumped by every navigation, so a slow load for a page the user has left
// does not overwrite the one they went to.
let navSeq = 0;
// Generations whose stream failed: not followed again on reload of the list
// (the failure was shown; ListMessages shows what the server saved).
const failedGenerations = new Set<string>();

// ---- session -------------------------------------------------------------

function tokenSource(): TokenSource | undefined {
  if (store.dev) return devTokenSource(store.api);
  const t = store.token;
  return t ? () => store.token : undefined;
}

function connect(): boolean {
  const getToken = tokenSource();
  if (!getToken) return false;
  parley = createParley({
    baseUrl: store.api,
    getToken,
    // ?protocol=grpc-web speaks gRPC-Web (binary) instead of Connect (JSON).
    protocol: new URLSearchParams(location.search).get("protocol") === "grpc-web" ? "grpc-web" : "connect",
    // Readable across origins because Parley's CORS exposes the headers.
    onRateLimit: (limit) => {
      document.body.dataset.rateRemaining = String(limit.remaining);
      const rate = $("rate");
      rate.hidden = limit.remaining > 5;
      rate.textContent = limit.remaining === 0 ? `Rate limited: wait ${limit.retryAfterSeconds ?? limit.resetSeconds}s` : `${limit.remaining} requests left for now`;
    },
  });
  return true;
}

function showSignIn(message?: string) {
  parley = undefined;
  $("app").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("usage").textContent = "";
  $<HTMLInputElement>("api-input").value = store.api;
  if (message) toast(message);
}

/**
 * forgetSessionForOtherApi signs out when the page's URL names another API
 * than the one the saved session was made for, so that the token is never
 * sent there; the sign-in form then shows the new API.
 */
function forgetSessionForOtherApi() {
  const wanted = new URLSearchParams(location.search).get("api");
  const saved = localStorage.getItem("parley.api");
  if (wanted && saved !== null && wanted !== saved) {
    store.token = null;
    store.dev = false;
    store.conversation = null;
    localStorage.removeItem("parley.api");
  }
}

async function start() {
  forgetSessionForOtherApi();
  if (!connect()) return showSignIn();
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  try {
    const me = await parley!.users.getMe({});
    $("who").textContent = me.profile?.email || `user ${me.profile?.userId.slice(0, 8)}`;
    await refreshUsage();
    await loadConversations();
    const id = location.hash.startsWith("#c=") ? location.hash.slice(3) : store.conversation;
    if (id) await openConversation(id);
    else newChat();
  } catch (err) {
    fail(err);
  }
}

$("use-token").onclick = () => {
  const t = $<HTMLTextAreaElement>("token-input").value.trim();
  if (!t) return toast("Paste an access token first.");
  store.api = $<HTMLInputElement>("api-input").value.trim() || store.api;
  store.token = t;
  store.dev = false;
  void start();
};
$("dev-token").onclick = () => {
  store.api = $<HTMLInputElement>("api-input").value.trim() || store.api;
  store.dev = true;
  store.token = null;
  void start();
};
$("signout").onclick = () => {
  dropLive();
  store.token = null;
  store.dev = false;
  store.conversation = null;
  showSignIn();
};

// ---- errors --------------------------------------------------------------

let toastTimer: ReturnType<typeof setTimeout> | undefined;

function toast(text: string) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 8000);
}

function fail(err: unknown) {
  if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
    return showSignIn(`${describeError(err)} Sign in again.`);
  }
  console.error(err);
  toast(describeError(err));
}

// ---- usage ---------------------------------------------------------------

async function refreshUsage() {
  if (!parley) return;
  const u = await parley.users.getUsage({});
  const used = Number(u.usedTokens + u.reservedTokens);
  const quota = Number(u.quotaTokens);
  $("usage").textContent = `${used.toLocaleString()} of ${quota.toLocaleString()} tokens this month`;
}

// ---- conversations -------------------------------------------------------

async function loadConversations() {
  const { conversations } = await parley!.chat.listConversations({ pageSize: 50 });
  const nav = $("conversations");
  nav.replaceChildren(
    ...conversations.map((c) => {
      const a = document.createElement("a");
      a.href = `#c=${c.id}`;
      a.dataset.id = c.id;
      a.textContent = c.title || "Untitled";
      a.className = c.id === conversationId ? "active" : "";
      a.onclick = (e) => {
        e.preventDefault();
        void openConversation(c.id).catch(fail);
      };
      return a;
    }),
  );
}

/** dropLive stops following the answer on screen (it goes on in the server). */
function dropLive() {
  live?.close();
  live = undefined;
  setStreaming(false);
}

function newChat() {
  navSeq++;
  dropLive();
  conversationId = null;
  store.conversation = null;
  history.replaceState(null, "", location.pathname + location.search);
  messages = [];
  $("conv-title").textContent = "New chat";
  render();
  setStreaming(false);
  void loadConversations().catch(fail);
}
$("new-chat").onclick = newChat;

async function openConversation(id: string) {
  const my = ++navSeq;
  dropLive();
  const { conversation } = await parley!.chat.getConversation({ conversationId: id }).catch((err) => {
    if (err instanceof ConnectError && err.code === Code.NotFound) {
      newChat();
      throw new ConnectError("that conversation no longer exists", Code.NotFound);
    }
    throw err;
  });
  if (my !== navSeq) return;
  conversationId = id;
  store.conversation = id;
  history.replaceState(null, "", `${location.pathname}${location.search}#c=${id}`);
  $("conv-title").textContent = conversation?.title || "Untitled";
  await loadMessages(my);
  await loadConversations();
}

async function loadMessages(my = navSeq) {
  const id = conversationId;
  if (!id) return;
  const res = await parley!.chat.listMessages({ conversationId: id, pageSize: 100 });
  if (my !== navSeq || id !== conversationId) return;
  messages = res.messages;
  render();
  // An answer still streaming (the page was reloaded mid-answer): follow it
  // from its first event.
  const last = messages.at(-1);
  if (
    last &&
    last.role === Role.ASSISTANT &&
    last.status === MessageStatus.STREAMING &&
    last.generationId &&
    !failedGenerations.has(last.generationId) &&
    !live
  ) {
    const generationId = last.generationId;
    follow((o) => resumeAnswer(parley!.chat, generationId, o), messages.length - 1, false);
  } else {
    setStreaming(false);
  }
}

// ---- messages ------------------------------------------------------------

const statusWords: Partial<Record<MessageStatus, string>> = {
  [MessageStatus.STOPPED]: "Stopped",
  [MessageStatus.FAILED]: "Failed: the model could not finish",
  [MessageStatus.INTERRUPTED]: "Interrupted",
};

function statusName(s: MessageStatus): string {
  return MessageStatus[s]?.toLowerCase() ?? "unknown";
}

function render() {
  $("empty").hidden = messages.length > 0;
  $("messages").replaceChildren(...messages.map((m, i) => messageItem(m, i)));
}

function messageItem(m: Message, index: number): HTMLLIElement {
  const li = document.createElement("li");
  li.className = `message ${m.role === Role.USER ? "user" : "assistant"}`;
  li.dataset.role = m.role === Role.USER ? "user" : "assistant";
  li.dataset.status = statusName(m.status);
  li.dataset.id = m.id;

  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = m.role === Role.USER ? "You" : m.model || "Parley";
  meta.append(who);
  if (m.siblingCount > 1) meta.append(branchSwitch(m));
  const badge = statusWords[m.status];
  if (badge) {
    const b = document.createElement("span");
    b.className = `badge ${statusName(m.status)}`;
    b.textContent = badge;
    meta.append(b);
  }
  if (m.role === Role.USER) meta.append(actionButton("Edit", () => startEdit(li, m, index)));
  if (m.role === Role.ASSISTANT && m.status !== MessageStatus.STREAMING) {
    meta.append(actionButton("Regenerate", () => regenerate(m, index)));
  }
  const content = document.createElement("div");
  content.className = "content";
  content.textContent = m.content;
  li.append(meta, content, artifactChips(m.toolUses.flatMap((u) => (u.artifact ? [u.artifact] : []))));
  return li;
}

function actionButton(label: string, onclick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link";
  b.textContent = label;
  b.onclick = onclick;
  return b;
}

function branchSwitch(m: Message): HTMLElement {
  const span = document.createElement("span");
  span.className = "branches";
  const go = (d: number) => async () => {
    if (live) return toast(busyText);
    const target = m.siblingIds[m.siblingIndex + d];
    if (!target) return;
    try {
      const res = await parley!.chat.selectBranch({ conversationId: conversationId!, messageId: target });
      messages = res.messages;
      render();
    } catch (err) {
      fail(err);
    }
  };
  const prev = actionButton("‹", () => void go(-1)());
  prev.disabled = m.siblingIndex === 0;
  prev.setAttribute("aria-label", "Previous version");
  const next = actionButton("›", () => void go(1)());
  next.disabled = m.siblingIndex >= m.siblingCount - 1;
  next.setAttribute("aria-label", "Next version");
  const label = document.createElement("span");
  label.className = "branch-label";
  label.textContent = `${m.siblingIndex + 1} / ${m.siblingCount}`;
  span.append(prev, label, next);
  return span;
}

function artifactChips(saved: SavedArtifact[]): HTMLElement {
  const div = document.createElement("div");
  div.className = "artifacts";
  for (const a of saved) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip doc";
    b.dataset.artifactId = a.artifactId;
    b.textContent = `${a.title} · v${a.version}`;
    b.onclick = () => void openArtifact(a.artifactId, a.version).catch(fail);
    div.append(b);
  }
  return div;
}

function startEdit(li: HTMLLIElement, m: Message, index: number) {
  if (live) return toast(busyText);
  const content = li.querySelector(".content")!;
  const box = document.createElement("textarea");
  box.className = "edit-box";
  box.value = m.content;
  const save = document.createElement("button");
  save.type = "button";
  save.textContent = "Save and answer";
  const cancel = actionButton("Cancel", () => render());
  save.onclick = () => {
    if (live) return toast(busyText);
    const text = box.value.trim();
    if (!text) return toast("A message cannot be empty.");
    messages = messages.slice(0, index);
    follow((o) => editMessage(parley!.chat, { messageId: m.id, content: text }, o), index);
  };
  const row = document.createElement("div");
  row.className = "row";
  row.append(save, cancel);
  content.replaceChildren(box, row);
  box.focus();
}

function regenerate(m: Message, index: number) {
  if (live) return toast(busyText);
  messages = messages.slice(0, index);
  follow((o) => regenerateMessage(parley!.chat, { messageId: m.id }, o), index, false);
}

// ---- streaming -----------------------------------------------------------

type Opts = StreamOptions<Answer, SendMessageResponse>;

function setStreaming(on: boolean) {
  $("send").hidden = on;
  $("stop").hidden = !on;
}

/**
 * follow renders an answer stream live. at is where its messages go in the
 * list; withUser says whether the stream's first event brings a new user
 * message (send and edit) rather than answering one already shown.
 */
function follow(open: (opts: Opts) => AnswerStream, at: number, withUser = true) {
  dropLive();
  const base = messages.slice(0, at);
  let stream: AnswerStream | undefined;
  const draw = (a: Answer) => {
    if (stream && live !== stream) return; // no longer the answer on screen
    const shown = [...base];
    if (withUser && a.userMessage) shown.push(a.userMessage);
    shown.push(a.message ?? liveMessage(a));
    messages = shown;
    render();
    const el = $("messages").lastElementChild as HTMLElement | null;
    el?.querySelector(".content")?.classList.toggle("typing", a.status === MessageStatus.STREAMING);
    const doc = a.toolCalls.at(-1);
    if (doc && !doc.done && (panelArtifact === "live" || $("panel").hidden)) showLiveDocument(doc.content);
    el?.scrollIntoView({ block: "end" });
  };
  stream = open({
    onUpdate: draw,
    onReconnect: (attempt) => {
      if (attempt > 1) toast("Connection lost; reconnecting…");
    },
  });
  const current = stream;
  live = current;
  setStreaming(true);
  void (async () => {
    try {
      const a = await current.done;
      if (live !== current) return; // closed: the page moved on
      draw(a);
      const saved = a.toolCalls.at(-1)?.artifact;
      if (saved && panelArtifact === "live") await openArtifact(saved.artifactId, saved.version);
    } catch (err) {
      if (current.answer.generationId) failedGenerations.add(current.answer.generationId);
      if (live === current) fail(err);
    } finally {
      if (live === current) {
        live = undefined;
        setStreaming(false);
        if (conversationId && parley) {
          // The saved branch, with the sibling counts an edit changed.
          await loadMessages().catch(fail);
          await loadConversations().catch(() => {});
          await refreshUsage().catch(() => {});
        }
      }
    }
  })();
}

function liveMessage(a: Answer): Message {
  return {
    id: a.messageId,
    role: Role.ASSISTANT,
    content: a.text,
    status: a.status,
    model: a.model,
    toolUses: a.toolCalls.filter((c) => c.artifact).map((c) => ({ callId: c.callId, name: c.name, artifact: c.artifact })),
    siblingCount: 1,
    siblingIndex: 0,
    siblingIds: [],
    generationId: a.generationId,
  } as unknown as Message;
}

let sending = false; // a send is creating its conversation
$("composer").onsubmit = async (e) => {
  e.preventDefault();
  const input = $<HTMLTextAreaElement>("input");
  const content = input.value.trim();
  if (!content || !parley || sending) return;
  if (live) return toast(busyText);
  sending = true;
  input.value = "";
  try {
    if (!conversationId) {
      const { conversation } = await parley.chat.createConversation({});
      conversationId = conversation!.id;
      store.conversation = conversationId;
      history.replaceState(null, "", `${location.pathname}${location.search}#c=${conversationId}`);
    }
    const id = conversationId;
    follow((o) => sendMessage(parley!.chat, { conversationId: id, content }, o), messages.length);
  } catch (err) {
    input.value = content;
    fail(err);
  } finally {
    sending = false;
  }
};
$<HTMLTextAreaElement>("input").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $<HTMLFormElement>("composer").requestSubmit();
  }
};
$("stop").onclick = () => void live?.stop().catch(fail);

// ---- artifacts -----------------------------------------------------------

let panelArtifact: string | undefined;

function openPanel(title: string, body: HTMLElement[]) {
  $("panel").hidden = false;
  $("panel-title").textContent = title;
  $("panel-body").replaceChildren(...body);
}
$("panel-close").onclick = () => {
  $("panel").hidden = true;
  panelArtifact = undefined;
};

function showLiveDocument(text: string) {
  panelArtifact = "live";
  const pre = document.createElement("pre");
  pre.className = "document";
  pre.textContent = text;
  openPanel("Writing…", [pre]);
}

async function openArtifact(id: string, version = 0) {
  panelArtifact = id;
  const [{ artifact, version: v }, { versions }] = await Promise.all([
    parley!.artifacts.getArtifact({ artifactId: id, version }),
    parley!.artifacts.listArtifactVersions({ artifactId: id, pageSize: 50 }),
  ]);
  if (panelArtifact !== id) return; // closed, or another one opened meanwhile
  const nav = document.createElement("div");
  nav.className = "versions";
  for (const x of [...versions].sort((a, b) => a.version - b.version)) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = x.version === v?.version ? "chip active" : "chip";
    b.textContent = `v${x.version}`;
    b.title = `by the ${x.author === 2 ? "assistant" : "user"}`;
    b.onclick = () => void openArtifact(id, x.version).catch(fail);
    nav.append(b);
  }
  const pre = document.createElement("pre");
  pre.className = "document";
  pre.dataset.version = String(v?.version ?? "");
  pre.textContent = v?.content ?? "";
  openPanel(artifact?.title ?? "Artifact", [nav, pre]);
}

// ---- agents --------------------------------------------------------------

const stepWords: Record<StepName, string> = {
  [StepName.UNSPECIFIED]: "",
  [StepName.PLAN]: "Plan",
  [StepName.RESEARCH]: "Research",
  [StepName.ANALYZE]: "Analyze",
  [StepName.EXECUTE]: "Execute",
  [StepName.SUMMARIZE]: "Summarize",
};
const stepIcons: Record<StepStatus, string> = {
  [StepStatus.UNSPECIFIED]: "·",
  [StepStatus.PENDING]: "○",
  [StepStatus.RUNNING]: "◐",
  [StepStatus.SUCCEEDED]: "●",
  [StepStatus.FAILED]: "✕",
  [StepStatus.CANCELED]: "⊘",
};

function drawRun(goal: string, v: RunView) {
  const list = document.createElement("ol");
  list.className = "steps";
  for (const s of v.steps) {
    const li = document.createElement("li");
    li.dataset.step = stepWords[s.name].toLowerCase();
    li.dataset.status = StepStatus[s.status].toLowerCase();
    const head = document.createElement("div");
    head.className = "step-head";
    head.textContent = `${stepIcons[s.status]} ${stepWords[s.name]}${s.attempt > 1 ? ` (attempt ${s.attempt})` : ""}`;
    const body = document.createElement("div");
    body.className = "step-body";
    body.textContent = s.status === StepStatus.SUCCEEDED ? s.output : s.text;
    li.append(head, body);
    if (s.retryError) {
      const r = document.createElement("div");
      r.className = "step-error";
      r.textContent = `Retrying: ${s.retryError}`;
      li.append(r);
    }
    list.append(li);
  }
  const status = document.createElement("p");
  status.className = "run-status";
  status.dataset.status = RunStatus[v.status].toLowerCase();
  status.textContent =
    v.status === RunStatus.SUCCEEDED
      ? "Done: the summary is in the conversation."
      : v.status === RunStatus.FAILED
        ? `Failed: ${v.run?.error ?? "unknown error"}`
        : v.status === RunStatus.CANCELED
          ? "Canceled."
          : "Working…";
  const body: HTMLElement[] = [status, list];
  if (!isRunEnded(v.status)) {
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "danger";
    cancel.textContent = "Cancel run";
    cancel.onclick = () => void parley!.agents.cancelRun({ runId: v.runId }).catch(fail);
    body.push(cancel);
  }
  openPanel(`Agent: ${goal}`, body);
}

$("agent-form").onsubmit = async (e) => {
  e.preventDefault();
  const goalInput = $<HTMLInputElement>("agent-goal");
  const goal = goalInput.value.trim();
  if (!goal || !parley) return toast("Give the agent a goal first.");
  try {
    if (!conversationId) {
      const { conversation } = await parley.chat.createConversation({ title: goal.slice(0, 80) });
      conversationId = conversation!.id;
      store.conversation = conversationId;
    }
    const runConversation = conversationId;
    const { run } = await parley.agents.startRun({ goal, conversationId: runConversation });
    goalInput.value = "";
    panelArtifact = `run:${run!.id}`;
    const mine = () => panelArtifact === `run:${run!.id}`;
    const w = watchRun(parley.agents, run!.id, { onUpdate: (v) => mine() && drawRun(goal, v) });
    if (mine()) drawRun(goal, w.view);
    const v = await w.done;
    if (mine()) drawRun(goal, v);
    // The summary was posted to the run's conversation: show it if that is
    // still the one on screen and no answer is streaming there.
    if (conversationId === runConversation && !live) await loadMessages();
  } catch (err) {
    fail(err);
  }
};

window.addEventListener("hashchange", () => {
  const id = location.hash.startsWith("#c=") ? location.hash.slice(3) : "";
  if (id && id !== conversationId && parley) void openConversation(id).catch(fail);
});

void start();

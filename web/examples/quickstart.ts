// Parley from TypeScript, in one file: run `make dev`, then
// `npm --prefix web run build && node web/.build/examples/quickstart.js`
// (or paste it into your app). The README shows this file; a test runs it.
import {
  Code,
  ConnectError,
  createParley,
  describeError,
  devTokenSource,
  RunStatus,
  sendMessage,
  watchRun,
} from "@parley/client";

const baseUrl = process.env.PARLEY_URL ?? "http://localhost:8080";

// getToken returns the current access token: Supabase's in an app (see
// TokenSource), the dev server's here. A call answered `unauthenticated`
// asks it once more with forceRefresh and is retried.
const parley = createParley({ baseUrl, getToken: devTokenSource(baseUrl) });

const { conversation } = await parley.chat.createConversation({ title: "Quickstart" });
const conversationId = conversation!.id;

// Stream an answer: onUpdate sees the text grow; a dropped connection is
// resumed after the last event received, so nothing is lost or repeated.
const stream = sendMessage(parley.chat, { conversationId, content: "I feel tired today" }, {
  onUpdate: (answer) => process.stdout.write(`\ranswer: ${answer.text}`),
});
const answer = await stream.done; // stream.stop() would stop it, keeping the text
console.log(`\nsaved as ${answer.messageId}, ${answer.usage?.completionTokens} tokens`);

// Errors carry a Connect code and a message written for people.
try {
  await parley.chat.getConversation({ conversationId: "not-a-uuid" });
} catch (err) {
  if (err instanceof ConnectError && err.code === Code.InvalidArgument) {
    console.log(describeError(err));
  }
}

// An agent run, watched step by step to its summary.
const { run } = await parley.agents.startRun({ goal: "Write a short note on sleep", conversationId });
const view = await watchRun(parley.agents, run!.id).done;
console.log(`run ${RunStatus[view.status].toLowerCase()}: ${view.run?.summary}`);

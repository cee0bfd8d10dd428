// @parley/client: typed Connect clients for Parley, a transport that keeps
// the Supabase token fresh, and helpers that follow answers and agent runs
// across dropped connections.

export * from "./agent.js";
export * from "./chat.js";
export * from "./clients.js";
export * from "./dev.js";
export * from "./errors.js";
export { isReconnectable, type StreamOptions } from "./follow.js";
export * from "./transport.js";

export * from "./gen/parley/v1/agent_pb.js";
export * from "./gen/parley/v1/artifact_pb.js";
export * from "./gen/parley/v1/billing_pb.js";
export * from "./gen/parley/v1/chat_pb.js";
export * from "./gen/parley/v1/search_pb.js";
export * from "./gen/parley/v1/share_pb.js";
export * from "./gen/parley/v1/user_pb.js";

export { Code, ConnectError } from "@connectrpc/connect";

// Typed clients for every Parley service.

import { createClient, type Client, type Transport } from "@connectrpc/connect";

import { AgentService } from "./gen/parley/v1/agent_pb.js";
import { ArtifactService } from "./gen/parley/v1/artifact_pb.js";
import { BillingService } from "./gen/parley/v1/billing_pb.js";
import { ChatService } from "./gen/parley/v1/chat_pb.js";
import { SearchService } from "./gen/parley/v1/search_pb.js";
import { ShareService } from "./gen/parley/v1/share_pb.js";
import { UserService } from "./gen/parley/v1/user_pb.js";
import { createParleyTransport, type ParleyTransportOptions } from "./transport.js";

/** ChatClient calls parley.v1.ChatService. */
export type ChatClient = Client<typeof ChatService>;
/** ArtifactClient calls parley.v1.ArtifactService. */
export type ArtifactClient = Client<typeof ArtifactService>;
/** SearchClient calls parley.v1.SearchService. */
export type SearchClient = Client<typeof SearchService>;
/** AgentClient calls parley.v1.AgentService. */
export type AgentClient = Client<typeof AgentService>;
/** UserClient calls parley.v1.UserService. */
export type UserClient = Client<typeof UserService>;
/** BillingClient calls parley.v1.BillingService. */
export type BillingClient = Client<typeof BillingService>;
/** ShareClient calls parley.v1.ShareService. */
export type ShareClient = Client<typeof ShareService>;

/** Parley holds a client for each service, sharing one transport. */
export interface Parley {
  transport: Transport;
  chat: ChatClient;
  artifacts: ArtifactClient;
  search: SearchClient;
  agents: AgentClient;
  users: UserClient;
  billing: BillingClient;
  shares: ShareClient;
}

/**
 * createParley returns clients for every service over one transport: pass a
 * transport, or the options of {@link createParleyTransport}.
 *
 * ```ts
 * const parley = createParley({ baseUrl: "http://localhost:8080", getToken });
 * const { conversation } = await parley.chat.createConversation({ title: "Hello" });
 * ```
 */
export function createParley(transport: Transport | ParleyTransportOptions): Parley {
  const t = "baseUrl" in transport ? createParleyTransport(transport) : transport;
  return {
    transport: t,
    chat: createClient(ChatService, t),
    artifacts: createClient(ArtifactService, t),
    search: createClient(SearchService, t),
    agents: createClient(AgentService, t),
    users: createClient(UserService, t),
    billing: createClient(BillingService, t),
    shares: createClient(ShareService, t),
  };
}

-- +goose Up
-- Parley keeps its tables in their own schema: Supabase's Data API exposes
-- `public`, and nothing here is meant to be reachable through it. Row level
-- security is enabled with no policies, so only the owner role that the
-- service connects as (which bypasses RLS) can read or write the rows.
CREATE SCHEMA IF NOT EXISTS parley;

CREATE TABLE parley.conversations (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL,
    title         text        NOT NULL DEFAULT '',
    system_prompt text        NOT NULL DEFAULT '',
    model         text        NOT NULL DEFAULT '',
    -- Client-chosen idempotency key of the create call, if any.
    request_id    text,
    -- Leaf of the branch the user is looking at; NULL until the first message.
    active_leaf_id uuid,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversations_request_id_key UNIQUE (user_id, request_id)
);

-- Serves ListConversations: newest first, keyset-paginated on (update_time, id).
CREATE INDEX conversations_user_update_idx
    ON parley.conversations (user_id, update_time DESC, id DESC);

CREATE TABLE parley.messages (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id   uuid        NOT NULL REFERENCES parley.conversations (id) ON DELETE CASCADE,
    user_id           uuid        NOT NULL,
    -- The message this one follows; siblings share a parent (branches).
    parent_id         uuid        REFERENCES parley.messages (id) ON DELETE CASCADE,
    role              text        NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content           text        NOT NULL DEFAULT '',
    status            text        NOT NULL DEFAULT 'completed'
                      CHECK (status IN ('completed', 'streaming', 'stopped', 'failed', 'interrupted')),
    model             text        NOT NULL DEFAULT '',
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    completion_tokens bigint      NOT NULL DEFAULT 0,
    finish_reason     text        NOT NULL DEFAULT '',
    -- Client-chosen idempotency key of the send call, if any (user messages).
    client_message_id text,
    -- The generation that writes an assistant message.
    generation_id     uuid,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_client_message_id_key UNIQUE (conversation_id, client_message_id),
    CONSTRAINT messages_generation_id_key UNIQUE (generation_id)
);

-- Serves the walk along a branch and the sibling lookups of ListMessages.
-- (A branch's messages are created in order, so create_time orders a branch.)
CREATE INDEX messages_parent_idx ON parley.messages (conversation_id, parent_id, create_time, id);

-- Finds answers left streaming by an instance that died (a small set).
CREATE INDEX messages_streaming_idx ON parley.messages (update_time) WHERE status = 'streaming';

ALTER TABLE parley.conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.messages ENABLE ROW LEVEL SECURITY;

-- +goose Down
DROP TABLE parley.messages;
DROP TABLE parley.conversations;

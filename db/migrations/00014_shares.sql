-- +goose Up
-- Share links: a read-only snapshot of a conversation's active branch,
-- taken when it was shared, readable by anyone with its id. The snapshot is
-- stored whole (JSON, written by internal/store from share.Snapshot), so
-- messages written later never appear in it and the messages' rows are not
-- read again. A revoke deletes the row; so does deleting the conversation
-- (ON DELETE CASCADE, run as the owner) and the user.
CREATE TABLE parley.shares (
    -- 256 random bits, base64url without padding: the id is the secret.
    id                    text        PRIMARY KEY CHECK (char_length(id) = 43),
    user_id               uuid        NOT NULL,
    conversation_id       uuid        NOT NULL REFERENCES parley.conversations (id) ON DELETE CASCADE,
    title                 text        NOT NULL,
    include_system_prompt boolean     NOT NULL,
    message_count         integer     NOT NULL,
    snapshot              jsonb       NOT NULL,
    create_time           timestamptz NOT NULL DEFAULT now()
);

-- Serves ListShares: newest first, keyset-paginated on (create_time, id).
CREATE INDEX shares_user_create_idx ON parley.shares (user_id, create_time DESC, id DESC);
-- Serves ListShares of one conversation and the cascade from conversations.
CREATE INDEX shares_conversation_idx ON parley.shares (conversation_id, create_time DESC, id DESC);

ALTER TABLE parley.shares ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, DELETE ON parley.shares TO parley_app;
CREATE POLICY parley_app_all ON parley.shares FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- +goose Down
DROP TABLE parley.shares;

-- +goose Up
-- Files attached to user messages (internal/attachment). The metadata is
-- always here; the content is here too (content) unless the deployment
-- stores attachments in S3-compatible object storage, when object_key
-- names the object instead. Exactly one of the two is set.
CREATE TABLE parley.attachments (
    id              uuid        PRIMARY KEY,
    -- An attachment belongs to its message and goes with it (and with its
    -- conversation); objects in storage are deleted by the service, under
    -- the conversation's key prefix.
    message_id      uuid        NOT NULL REFERENCES parley.messages (id) ON DELETE CASCADE,
    conversation_id uuid        NOT NULL REFERENCES parley.conversations (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL,
    -- The position of the attachment among its message's, from 0.
    position        integer     NOT NULL CHECK (position >= 0),
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    content_type    text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('image', 'text')),
    size_bytes      bigint      NOT NULL CHECK (size_bytes >= 0),
    width           integer     NOT NULL DEFAULT 0,
    height          integer     NOT NULL DEFAULT 0,
    sha256          text        NOT NULL,
    -- Capped at 16 MiB whatever the configuration says: larger files
    -- belong in object storage.
    content         bytea       CHECK (length(content) <= 16777216),
    object_key      text,
    create_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT attachments_one_place CHECK ((content IS NULL) <> (object_key IS NULL)),
    CONSTRAINT attachments_message_position_key UNIQUE (message_id, position)
);

-- Foreign keys lead an index: the message's is the unique constraint's.
CREATE INDEX attachments_conversation_id_idx ON parley.attachments (conversation_id);
-- Export and DeleteMe find a user's attachments.
CREATE INDEX attachments_user_id_idx ON parley.attachments (user_id);

ALTER TABLE parley.attachments ENABLE ROW LEVEL SECURITY;
-- Rows go with their message through ON DELETE CASCADE (run as the owner).
GRANT SELECT, INSERT ON parley.attachments TO parley_app;
CREATE POLICY parley_app_all ON parley.attachments FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- +goose Down
DROP TABLE parley.attachments;

-- +goose Up
-- Artifacts: the documents a user or the assistant writes, with every
-- version kept whole. The artifacts row holds the latest version's title
-- and content (what lists, search and the next edit read); the versions
-- table holds every version, the latest included.
--
-- An artifact outlives the conversation it came from (it is the user's
-- document): deleting a conversation sets conversation_id and message_id
-- to NULL here and in its versions. The referential actions run as the
-- tables' owner, so parley_app needs no UPDATE on artifact_versions.
CREATE TABLE parley.artifacts (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid        NOT NULL,
    title           text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('text', 'code', 'sheet')),
    language        text        NOT NULL DEFAULT '',
    -- The latest version's content.
    content         text        NOT NULL DEFAULT '',
    latest_version  integer     NOT NULL DEFAULT 1 CHECK (latest_version >= 1),
    conversation_id uuid        REFERENCES parley.conversations (id) ON DELETE SET NULL,
    message_id      uuid        REFERENCES parley.messages (id) ON DELETE SET NULL,
    -- Client-chosen idempotency key of the create call, if any.
    request_id      text,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT artifacts_request_id_key UNIQUE (user_id, request_id),
    CONSTRAINT artifacts_language_check CHECK (kind = 'code' OR language = '')
);

-- Serves ListArtifacts: newest update first, keyset-paginated on
-- (update_time, id).
CREATE INDEX artifacts_user_update_idx ON parley.artifacts (user_id, update_time DESC, id DESC);
-- Serves ListArtifacts of one conversation, and the SET NULL when the
-- conversation is deleted.
CREATE INDEX artifacts_conversation_idx ON parley.artifacts (conversation_id, update_time DESC, id DESC);
-- Serves the SET NULL when a message is deleted (with its conversation).
CREATE INDEX artifacts_message_idx ON parley.artifacts (message_id);

CREATE TABLE parley.artifact_versions (
    artifact_id     uuid        NOT NULL REFERENCES parley.artifacts (id) ON DELETE CASCADE,
    version         integer     NOT NULL CHECK (version >= 1),
    user_id         uuid        NOT NULL,
    title           text        NOT NULL,
    content         text        NOT NULL,
    author          text        NOT NULL CHECK (author IN ('user', 'assistant')),
    conversation_id uuid        REFERENCES parley.conversations (id) ON DELETE SET NULL,
    message_id      uuid        REFERENCES parley.messages (id) ON DELETE SET NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    -- Also serves ListArtifactVersions (newest first, keyset on version)
    -- and the cascade from artifacts.
    PRIMARY KEY (artifact_id, version)
);

CREATE INDEX artifact_versions_conversation_idx ON parley.artifact_versions (conversation_id);
CREATE INDEX artifact_versions_message_idx ON parley.artifact_versions (message_id);

ALTER TABLE parley.artifacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.artifact_versions ENABLE ROW LEVEL SECURITY;

-- What the queries in db/queries/artifacts.sql use (see 00004). Versions
-- are deleted with their artifact (ON DELETE CASCADE, run as the owner).
GRANT SELECT, INSERT, UPDATE, DELETE ON parley.artifacts TO parley_app;
GRANT SELECT, INSERT ON parley.artifact_versions TO parley_app;
CREATE POLICY parley_app_all ON parley.artifacts FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.artifact_versions FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- +goose Down
DROP TABLE parley.artifact_versions;
DROP TABLE parley.artifacts;

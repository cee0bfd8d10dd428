-- +goose Up
-- Monthly token usage per user, the source of truth for plan quotas. Each
-- generation reserves an estimate before it asks the model (in the same
-- statement that saves the exchange) and settles it with the real usage
-- when it ends; the row lock serializes a user's concurrent reservations,
-- so racing generations cannot overspend the quota or exceed the limit of
-- concurrent answers, whichever instance runs them.
CREATE TABLE parley.token_usage (
    user_id            uuid   NOT NULL,
    -- First day of the month (UTC) the tokens count against.
    month              date   NOT NULL,
    used_tokens        bigint NOT NULL DEFAULT 0 CHECK (used_tokens >= 0),
    reserved_tokens    bigint NOT NULL DEFAULT 0 CHECK (reserved_tokens >= 0),
    active_generations int    NOT NULL DEFAULT 0 CHECK (active_generations >= 0),
    PRIMARY KEY (user_id, month)
);

ALTER TABLE parley.token_usage ENABLE ROW LEVEL SECURITY;

-- What a streaming answer holds in token_usage, released when it ends.
ALTER TABLE parley.messages ADD COLUMN reserved_tokens bigint NOT NULL DEFAULT 0;

-- One answer at a time per conversation, enforced even for sends that race
-- (a double click, two tabs): the check in the insert reads a snapshot.
CREATE UNIQUE INDEX messages_one_streaming_idx ON parley.messages (conversation_id) WHERE status = 'streaming';

-- +goose Down
DROP INDEX parley.messages_one_streaming_idx;
ALTER TABLE parley.messages DROP COLUMN reserved_tokens;
DROP TABLE parley.token_usage;

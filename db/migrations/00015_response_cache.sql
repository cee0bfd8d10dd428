-- +goose Up
-- An answer served from the response cache (an earlier answer to the same
-- deterministic request, kept in Redis) instead of the model. Existing
-- messages were all written by the model.
ALTER TABLE parley.messages ADD COLUMN cached boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE parley.messages DROP COLUMN cached;

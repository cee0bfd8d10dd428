-- +goose NO TRANSACTION
-- +goose Up
-- Every foreign key leads an index (a test in internal/store checks it).
-- parent_id had none: the self-referencing ON DELETE CASCADE then scanned
-- every user's messages once per deleted message, and so did the walk down
-- a branch (NewestLeaf) and the lookup of a retried send's answer, which
-- this index also orders.
--
-- CONCURRENTLY, so the build does not block writes to messages (answers
-- streaming on the old revision while the deploy migrates). It cannot run
-- in a transaction, hence NO TRANSACTION; a build that fails half way
-- leaves an invalid index, which the DROP clears when the migration is run
-- again.
DROP INDEX CONCURRENTLY IF EXISTS parley.messages_parent_id_idx;
CREATE INDEX CONCURRENTLY messages_parent_id_idx ON parley.messages (parent_id, create_time, id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS parley.messages_parent_id_idx;

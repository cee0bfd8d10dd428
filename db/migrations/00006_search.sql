-- +goose NO TRANSACTION
-- +goose Up
-- Full-text search over messages and artifacts (SearchService).
--
-- The text search configuration is a setting (SEARCH_TEXT_CONFIG: simple
-- or english), but the configuration of a vector column or an index is
-- fixed when it is created, and a migration takes no parameter. So both
-- tables are indexed once per configuration the setting allows, and the
-- setting picks which a query uses (db/queries/search.sql has a query per
-- configuration): switching takes effect at the next start, with nothing
-- to migrate or rebuild. The price is a second index (and, for artifacts,
-- a second vector) per row; allowing another configuration is a migration
-- adding its own.
--
-- Artifacts get stored generated columns: their queries name their
-- columns, and their texts are long (up to 1 MiB), so ranking reads the
-- stored vector instead of parsing the text again. Messages get expression
-- indexes instead: every message query of the chat domain reads `*`, and
-- a generated column would add two vectors to each message it reads; the
-- search ranks the few matches of one user by parsing their text again.
-- An answer still streaming is not indexed (the indexes are partial), so
-- the checkpoints that save it every second never touch them.
--
-- Vectors cover the first 256 Ki characters of a text: a tsvector holds at
-- most 1 MiB, which a 1 MiB artifact of distinct words (a sheet of
-- numbers) would overflow, failing the write.
--
-- The indexes lead with user_id (btree_gin makes a uuid a GIN key), so a
-- search reads the posting lists of one user's rows, never every user's
-- matches. btree_gin is a trusted extension (PostgreSQL 13+), which the
-- database's owner may create; it goes into Parley's schema unless the
-- database has it already (Supabase keeps extensions in `extensions`): the
-- indexes find its operator classes wherever it is.
--
-- NO TRANSACTION, so that the message indexes are built CONCURRENTLY
-- (answers keep being saved meanwhile); every statement can run again
-- after a failure half way (an invalid index is dropped and rebuilt).
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA parley;

-- An artifact's title weighs more than its content (weight A); the
-- content has the default weight (D), as messages do, so that a word in
-- an artifact's text and the same word in a message rank alike. The table
-- is new (00005), so rewriting it is cheap.
ALTER TABLE parley.artifacts
    ADD COLUMN IF NOT EXISTS search_simple tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, title), 'A')
        || to_tsvector('simple'::regconfig, left(content, 262144))) STORED,
    ADD COLUMN IF NOT EXISTS search_english tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, title), 'A')
        || to_tsvector('english'::regconfig, left(content, 262144))) STORED;

DROP INDEX CONCURRENTLY IF EXISTS parley.artifacts_search_simple_idx;
CREATE INDEX CONCURRENTLY artifacts_search_simple_idx ON parley.artifacts USING gin (user_id, search_simple);
DROP INDEX CONCURRENTLY IF EXISTS parley.artifacts_search_english_idx;
CREATE INDEX CONCURRENTLY artifacts_search_english_idx ON parley.artifacts USING gin (user_id, search_english);

-- The expressions must be written exactly so in the queries for the
-- planner to use these indexes.
DROP INDEX CONCURRENTLY IF EXISTS parley.messages_search_simple_idx;
CREATE INDEX CONCURRENTLY messages_search_simple_idx ON parley.messages
    USING gin (user_id, to_tsvector('simple'::regconfig, left(content, 262144)))
    WHERE status <> 'streaming';
DROP INDEX CONCURRENTLY IF EXISTS parley.messages_search_english_idx;
CREATE INDEX CONCURRENTLY messages_search_english_idx ON parley.messages
    USING gin (user_id, to_tsvector('english'::regconfig, left(content, 262144)))
    WHERE status <> 'streaming';

-- +goose Down
-- btree_gin stays: something else in the database may use it.
DROP INDEX CONCURRENTLY IF EXISTS parley.messages_search_english_idx;
DROP INDEX CONCURRENTLY IF EXISTS parley.messages_search_simple_idx;
DROP INDEX CONCURRENTLY IF EXISTS parley.artifacts_search_english_idx;
DROP INDEX CONCURRENTLY IF EXISTS parley.artifacts_search_simple_idx;
ALTER TABLE parley.artifacts DROP COLUMN IF EXISTS search_english, DROP COLUMN IF EXISTS search_simple;

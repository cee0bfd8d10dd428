-- +goose Up
-- Message search reads stored vectors (as artifacts do since 00006), kept
-- beside the messages rather than in them: every chat query reads
-- `messages.*`, and two vectors per message would travel with each of them.
-- Ranking a match then reads its vector instead of parsing its text again,
-- which made common words slow (each match cost a to_tsvector call).
--
-- A trigger keeps the table: a message is indexed once it is final, never
-- at the checkpoints of an answer while it streams, and its row goes with
-- it (ON DELETE CASCADE). The user message of an exchange is indexed with
-- its answer, when the answer ends: the statement that saves an exchange
-- is on the way to the first token, and parsing and indexing text there
-- would delay every answer (a user message saved alone is indexed at
-- once). The function runs as the migrations' owner (SECURITY DEFINER),
-- so the service role only reads this table.
CREATE TABLE parley.message_search (
    message_id      uuid        PRIMARY KEY REFERENCES parley.messages (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL,
    conversation_id uuid        NOT NULL,
    create_time     timestamptz NOT NULL,
    search_simple   tsvector    NOT NULL,
    search_english  tsvector    NOT NULL
);

CREATE INDEX message_search_simple_idx ON parley.message_search USING gin (user_id, search_simple);
CREATE INDEX message_search_english_idx ON parley.message_search USING gin (user_id, search_english);

-- +goose StatementBegin
CREATE FUNCTION parley.index_message() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, parley AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.role = 'user' AND EXISTS (
        SELECT 1 FROM parley.messages a WHERE a.parent_id = NEW.id AND a.status = 'streaming') THEN
        RETURN NULL; -- an exchange being saved: indexed when its answer ends
    END IF;
    INSERT INTO parley.message_search (message_id, user_id, conversation_id, create_time, search_simple, search_english)
    VALUES (NEW.id, NEW.user_id, NEW.conversation_id, NEW.create_time,
            to_tsvector('simple'::regconfig, left(NEW.content, 262144)),
            to_tsvector('english'::regconfig, left(NEW.content, 262144)))
    ON CONFLICT (message_id) DO UPDATE
        SET search_simple = EXCLUDED.search_simple, search_english = EXCLUDED.search_english;
    -- An answer's end also indexes its question (by primary key: one
    -- lookup, never a scan).
    IF NEW.role = 'assistant' AND NEW.parent_id IS NOT NULL THEN
        INSERT INTO parley.message_search (message_id, user_id, conversation_id, create_time, search_simple, search_english)
        SELECT p.id, p.user_id, p.conversation_id, p.create_time,
               to_tsvector('simple'::regconfig, left(p.content, 262144)),
               to_tsvector('english'::regconfig, left(p.content, 262144))
        FROM parley.messages p
        WHERE p.id = NEW.parent_id AND p.role = 'user'
        ON CONFLICT (message_id) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

REVOKE ALL ON FUNCTION parley.index_message() FROM PUBLIC;

CREATE TRIGGER messages_index AFTER INSERT OR UPDATE OF content, status ON parley.messages
    FOR EACH ROW WHEN (NEW.status <> 'streaming') EXECUTE FUNCTION parley.index_message();

INSERT INTO parley.message_search (message_id, user_id, conversation_id, create_time, search_simple, search_english)
SELECT id, user_id, conversation_id, create_time,
       to_tsvector('simple'::regconfig, left(content, 262144)),
       to_tsvector('english'::regconfig, left(content, 262144))
FROM parley.messages WHERE status <> 'streaming'
ON CONFLICT (message_id) DO NOTHING;

DROP INDEX IF EXISTS parley.messages_search_simple_idx;
DROP INDEX IF EXISTS parley.messages_search_english_idx;

ALTER TABLE parley.message_search ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON parley.message_search TO parley_app;
CREATE POLICY parley_app_all ON parley.message_search FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- +goose Down
CREATE INDEX messages_search_simple_idx ON parley.messages
    USING gin (user_id, to_tsvector('simple'::regconfig, left(content, 262144))) WHERE status <> 'streaming';
CREATE INDEX messages_search_english_idx ON parley.messages
    USING gin (user_id, to_tsvector('english'::regconfig, left(content, 262144))) WHERE status <> 'streaming';
DROP TRIGGER messages_index ON parley.messages;
DROP FUNCTION parley.index_message();
DROP TABLE parley.message_search;

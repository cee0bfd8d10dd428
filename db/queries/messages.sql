-- name: ListBranch :many
-- One page of the branch from the root down to a leaf (the conversation's
-- active leaf when leaf_id is NULL), root first, with each message's
-- siblings, the user's rating of it and its attachments' metadata (in the
-- same statement: a listing is one round trip). A branch's messages are
-- created in order, so (create_time, id) is both the branch order and the
-- keyset cursor.
WITH RECURSIVE conv AS (
    SELECT c.id, c.active_leaf_id FROM parley.conversations c
    WHERE c.id = @conversation_id AND c.user_id = @user_id
), branch AS (
    SELECT m.id, m.conversation_id, m.parent_id, m.create_time, 1 AS depth
    FROM parley.messages m JOIN conv ON m.conversation_id = conv.id
    WHERE m.id = COALESCE(sqlc.narg('leaf_id')::uuid, conv.active_leaf_id)
    UNION ALL
    SELECT p.id, p.conversation_id, p.parent_id, p.create_time, b.depth + 1
    FROM parley.messages p JOIN branch b ON p.id = b.parent_id
    WHERE b.depth < 100000
)
SELECT sqlc.embed(m), s.sibling_ids::uuid[] AS sibling_ids,
       r.rating AS rating, r.comment AS rating_comment, r.tags AS rating_tags, r.update_time AS rating_time,
       att.list::jsonb AS attachments
FROM branch b
JOIN parley.messages m ON m.id = b.id
LEFT JOIN parley.message_ratings r ON r.message_id = m.id AND r.user_id = @user_id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
            'id', a.id, 'name', a.name, 'content_type', a.content_type, 'kind', a.kind, 'size_bytes', a.size_bytes,
            'width', a.width, 'height', a.height, 'sha256', a.sha256, 'create_time', a.create_time) ORDER BY a.position) AS list
    FROM parley.attachments a
    WHERE a.message_id = m.id AND a.user_id = @user_id
) att ON true
CROSS JOIN LATERAL (
    SELECT array_agg(x.id ORDER BY x.create_time, x.id) AS sibling_ids
    FROM parley.messages x
    WHERE x.conversation_id = b.conversation_id
      AND (x.parent_id = b.parent_id OR (x.parent_id IS NULL AND b.parent_id IS NULL))
) s
WHERE sqlc.narg('after_time')::timestamptz IS NULL
   OR (m.create_time, m.id) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::uuid)
ORDER BY m.create_time, m.id
LIMIT @page_limit;

-- name: LoadContext :many
-- What a generation needs before it asks the model, in one round trip: the
-- conversation's settings and the branch it continues, root first. No row:
-- no such conversation. One row with a NULL message: no messages yet. The
-- walk up the branch stops once max_bytes characters are loaded (the prompt
-- is trimmed to the model's budget anyway), so a long conversation costs
-- no more than a prompt's worth; the leaf always comes.
WITH RECURSIVE conv AS (
    SELECT c.id, c.title, c.system_prompt, c.model, c.active_leaf_id FROM parley.conversations c
    WHERE c.id = @conversation_id AND c.user_id = @user_id
), branch AS (
    SELECT m.id, m.parent_id, m.role, m.content, m.status, m.tool_rounds, m.client_message_id, m.create_time, 1 AS depth,
           char_length(m.content)::bigint AS loaded
    FROM parley.messages m JOIN conv ON m.conversation_id = conv.id
    WHERE m.id = COALESCE(sqlc.narg('leaf_id')::uuid, conv.active_leaf_id)
    UNION ALL
    SELECT p.id, p.parent_id, p.role, p.content, p.status, p.tool_rounds, p.client_message_id, p.create_time, b.depth + 1,
           b.loaded + char_length(p.content)
    FROM parley.messages p JOIN branch b ON p.id = b.parent_id
    WHERE b.depth < sqlc.arg('max_depth')::int AND b.loaded < sqlc.arg('max_bytes')::bigint
)
SELECT conv.title AS conversation_title, conv.system_prompt, conv.model AS conversation_model,
       b.id AS message_id, b.parent_id, b.role, b.content, b.status, b.tool_rounds, b.client_message_id
FROM conv LEFT JOIN branch b ON true
ORDER BY b.depth DESC;

-- name: InsertMessages :many
-- Saves an exchange in one statement (one round trip): it reserves the
-- answer's token estimate against the monthly quota and takes one of the
-- user's concurrent-answer slots, then saves an optional user message, the
-- streaming assistant message and the conversation's new active leaf.
-- Nothing is saved unless the user owns the conversation, the parent (if
-- any) belongs to it, and the quota and slot are available.
WITH conv AS (
    SELECT c.id FROM parley.conversations c
    WHERE c.id = sqlc.arg('conversation_id') AND c.user_id = sqlc.arg('user_id')
      -- One answer at a time per conversation.
      AND NOT EXISTS (SELECT 1 FROM parley.messages s WHERE s.conversation_id = c.id AND s.status = 'streaming')
      AND (sqlc.narg('parent_id')::uuid IS NULL OR EXISTS (
          SELECT 1 FROM parley.messages p WHERE p.id = sqlc.narg('parent_id')::uuid AND p.conversation_id = c.id))
), reserve AS (
    INSERT INTO parley.token_usage AS u (user_id, month, reserved_tokens, active_generations)
    SELECT sqlc.arg('user_id'), sqlc.arg('month')::date, sqlc.arg('reserve_tokens')::bigint, 1
    FROM conv
    WHERE sqlc.arg('reserve_tokens')::bigint <= sqlc.arg('quota_tokens')::bigint AND sqlc.arg('max_active')::int >= 1
    ON CONFLICT (user_id, month) DO UPDATE
        SET reserved_tokens = u.reserved_tokens + EXCLUDED.reserved_tokens,
            active_generations = u.active_generations + 1
        WHERE u.used_tokens + u.reserved_tokens + EXCLUDED.reserved_tokens <= sqlc.arg('quota_tokens')::bigint
          AND u.active_generations < sqlc.arg('max_active')::int
    RETURNING 1
), user_msg AS (
    INSERT INTO parley.messages (id, conversation_id, user_id, parent_id, role, content, status, client_message_id, create_time, update_time)
    SELECT sqlc.arg('user_message_id'), conv.id, sqlc.arg('user_id'), sqlc.narg('parent_id')::uuid, 'user', sqlc.arg('content'), 'completed',
           sqlc.narg('client_message_id'), sqlc.arg('create_time'), sqlc.arg('create_time')
    FROM conv WHERE sqlc.arg('with_user_message')::bool AND EXISTS (SELECT 1 FROM reserve)
    RETURNING *
), assistant_msg AS (
    -- A regenerated answer (no user message) carries the client's
    -- idempotency key itself. Its prompt_tokens hold the prompt's estimate
    -- until the provider's count replaces it, so an answer that never
    -- finishes (deleted, swept) is still charged for the prompt it sent.
    INSERT INTO parley.messages (id, conversation_id, user_id, parent_id, role, status, model, generation_id, reserved_tokens,
                                 prompt_tokens, client_message_id, create_time, update_time)
    SELECT sqlc.arg('assistant_message_id'), conv.id, sqlc.arg('user_id'),
           CASE WHEN sqlc.arg('with_user_message')::bool THEN sqlc.arg('user_message_id')::uuid ELSE sqlc.narg('parent_id')::uuid END,
           'assistant', 'streaming', sqlc.arg('model'), sqlc.arg('generation_id'), sqlc.arg('reserve_tokens')::bigint,
           sqlc.arg('prompt_tokens')::bigint,
           CASE WHEN sqlc.arg('with_user_message')::bool THEN NULL ELSE sqlc.narg('client_message_id') END,
           sqlc.arg('create_time')::timestamptz + interval '1 microsecond', sqlc.arg('create_time')::timestamptz + interval '1 microsecond'
    FROM conv
    WHERE EXISTS (SELECT 1 FROM reserve) AND (NOT sqlc.arg('with_user_message')::bool OR EXISTS (SELECT 1 FROM user_msg))
    RETURNING *
), touched AS (
    UPDATE parley.conversations c SET active_leaf_id = a.id, update_time = now()
    FROM assistant_msg a WHERE c.id = a.conversation_id
)
SELECT * FROM user_msg
UNION ALL
SELECT * FROM assistant_msg;

-- name: GetTokenUsage :one
SELECT * FROM parley.token_usage
WHERE user_id = @user_id AND month = @month;

-- name: GetMessage :one
SELECT * FROM parley.messages
WHERE id = @id AND user_id = @user_id;

-- name: GetMessageByGeneration :one
-- The answer a generation writes, with the user's rating of it (what
-- StopGeneration and ResumeGeneration answer for an ended answer).
SELECT sqlc.embed(m), r.rating AS rating, r.comment AS rating_comment, r.tags AS rating_tags, r.update_time AS rating_time
FROM parley.messages m
LEFT JOIN parley.message_ratings r ON r.message_id = m.id AND r.user_id = m.user_id
WHERE m.generation_id = @generation_id AND m.user_id = @user_id;

-- name: GetExchangeByClientMessageID :many
-- A retried send or edit: the user message saved under client_message_id
-- and its first answer. A retried regenerate: the answer saved under it
-- and its user message (the answer's parent).
WITH tagged AS (
    SELECT * FROM parley.messages t
    WHERE t.conversation_id = @conversation_id AND t.user_id = @user_id
      AND t.client_message_id = @client_message_id
)
SELECT * FROM tagged
UNION ALL
(SELECT a.* FROM parley.messages a JOIN tagged u ON a.parent_id = u.id
 WHERE u.role = 'user' AND a.role = 'assistant'
 ORDER BY a.create_time, a.id LIMIT 1)
UNION ALL
SELECT p.* FROM parley.messages p JOIN tagged a ON p.id = a.parent_id
WHERE a.role = 'assistant';

-- name: CheckpointMessages :many
-- Saves what every streaming answer of an instance has so far, in one
-- statement a second however many answers run, and returns the ids still
-- streaming: an answer missing from the result was ended elsewhere. An
-- answer whose text has not changed (changed false: the model is silent,
-- or a tool runs) is not written, only looked up, so a stop that reached
-- only the database ends it too. Ids come from the server's own runs,
-- never from a client, hence no user id.
WITH c AS (
    SELECT unnest(@ids::uuid[]) AS id, unnest(@contents::text[]) AS content, unnest(@changed::bool[]) AS changed
), saved AS (
    UPDATE parley.messages m SET content = c.content, update_time = now()
    FROM c
    WHERE m.id = c.id AND c.changed AND m.status = 'streaming'
    RETURNING m.id
)
SELECT saved.id FROM saved
UNION ALL
SELECT m.id FROM parley.messages m JOIN c ON m.id = c.id
WHERE NOT c.changed AND m.status = 'streaming';

-- name: FinishMessage :one
-- Ends an answer once (a message that is no longer streaming stays as it
-- is) and settles its reservation: the real usage replaces the estimate
-- and the concurrent-answer slot is freed.
WITH fin AS (
    UPDATE parley.messages m
    SET content = @content, status = @status, model = @model,
        prompt_tokens = @prompt_tokens, completion_tokens = @completion_tokens,
        finish_reason = @finish_reason, tool_rounds = sqlc.narg('tool_rounds')::jsonb, cached = @cached,
        reserved_tokens = 0, update_time = now()
    FROM (SELECT o.id, o.reserved_tokens FROM parley.messages o WHERE o.id = @id) old
    WHERE m.id = old.id AND m.status = 'streaming'
    RETURNING m.*, old.reserved_tokens AS released_tokens
), settle AS (
    UPDATE parley.token_usage u
    SET used_tokens = u.used_tokens + fin.prompt_tokens + fin.completion_tokens,
        reserved_tokens = GREATEST(u.reserved_tokens - fin.released_tokens, 0),
        active_generations = GREATEST(u.active_generations - 1, 0)
    FROM fin
    WHERE u.user_id = fin.user_id AND u.month = date_trunc('month', fin.create_time AT TIME ZONE 'UTC')::date
)
SELECT id, conversation_id, user_id, parent_id, role, content, status, model, prompt_tokens,
       completion_tokens, finish_reason, client_message_id, generation_id, create_time, update_time, reserved_tokens,
       tool_rounds, cached
FROM fin;

-- name: InterruptStaleMessages :execrows
-- Answers left streaming by an instance that died are marked interrupted
-- after the longest a generation may run, and their reservations released.
WITH stale AS (
    UPDATE parley.messages m SET status = 'interrupted', reserved_tokens = 0, update_time = now()
    FROM (SELECT o.id, o.reserved_tokens FROM parley.messages o
          WHERE o.status = 'streaming' AND o.update_time < @before) old
    WHERE m.id = old.id AND m.status = 'streaming'
    RETURNING m.user_id, m.create_time, old.reserved_tokens AS released_tokens,
              -- The provider's count died with the instance: the prompt's
              -- estimate and about 4 characters a token of the text saved.
              m.prompt_tokens + ceil(length(m.content) / 4.0)::bigint AS estimated_tokens
), released AS (
    SELECT user_id, date_trunc('month', create_time AT TIME ZONE 'UTC')::date AS month,
           sum(released_tokens) AS tokens, sum(estimated_tokens) AS used, count(*) AS answers
    FROM stale GROUP BY 1, 2
), settle AS (
    UPDATE parley.token_usage u
    SET used_tokens = u.used_tokens + r.used,
        reserved_tokens = GREATEST(u.reserved_tokens - r.tokens, 0),
        active_generations = GREATEST(u.active_generations - r.answers, 0)
    FROM released r
    WHERE u.user_id = r.user_id AND u.month = r.month
)
SELECT 1 FROM stale;

-- name: NewestLeaf :one
-- The leaf reached from a message by always taking the newest child.
WITH RECURSIVE start AS (
    SELECT m.id FROM parley.messages m
    WHERE m.id = @message_id AND m.conversation_id = @conversation_id AND m.user_id = @user_id
), descent AS (
    SELECT start.id, 1 AS depth FROM start
    UNION ALL
    SELECT (SELECT c.id FROM parley.messages c WHERE c.parent_id = d.id
            ORDER BY c.create_time DESC, c.id DESC LIMIT 1), d.depth + 1
    FROM descent d
    WHERE d.id IS NOT NULL AND d.depth < 100000
)
SELECT id::uuid FROM descent WHERE id IS NOT NULL ORDER BY depth DESC LIMIT 1;

-- name: InsertMessage :one
-- Saves one finished message as given; tests use it to build histories.
INSERT INTO parley.messages (id, conversation_id, user_id, parent_id, role, content, status, model, create_time, update_time)
SELECT sqlc.arg('id'), c.id, sqlc.arg('user_id'), sqlc.narg('parent_id')::uuid, sqlc.arg('role'), sqlc.arg('content'),
       sqlc.arg('status'), sqlc.arg('model'), clock_timestamp(), clock_timestamp()
FROM parley.conversations c WHERE c.id = sqlc.arg('conversation_id') AND c.user_id = sqlc.arg('user_id')
RETURNING *;

-- name: CountStreaming :one
SELECT count(*) FROM parley.messages
WHERE conversation_id = @conversation_id AND user_id = @user_id AND status = 'streaming';

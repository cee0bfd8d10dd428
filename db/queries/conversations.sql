-- name: CreateConversation :one
-- A repeated (user_id, request_id) returns the row the first call created:
-- the no-op update makes RETURNING yield the existing row on conflict. An
-- empty system prompt or model takes the user's default from their profile
-- (parley.profiles), if they have one.
INSERT INTO parley.conversations (user_id, title, system_prompt, model, request_id)
SELECT @user_id, @title,
       COALESCE(NULLIF(@system_prompt::text, ''), p.default_system_prompt, ''),
       COALESCE(NULLIF(@model::text, ''), p.default_model, ''),
       sqlc.narg('request_id')
FROM (SELECT 1) one
LEFT JOIN parley.profiles p ON p.user_id = @user_id
ON CONFLICT (user_id, request_id) DO UPDATE SET request_id = EXCLUDED.request_id
RETURNING *;

-- name: GetConversation :one
SELECT * FROM parley.conversations
WHERE id = @id AND user_id = @user_id;

-- name: ListConversations :many
-- Keyset pagination, newest first: the cursor is the (update_time, id) of the
-- last row of the previous page.
SELECT * FROM parley.conversations
WHERE user_id = @user_id
  AND (sqlc.narg('after_time')::timestamptz IS NULL
       OR (update_time, id) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::uuid))
ORDER BY update_time DESC, id DESC
LIMIT @page_limit;

-- name: UpdateConversation :one
-- NULL arguments leave their column unchanged.
UPDATE parley.conversations
SET title         = COALESCE(sqlc.narg('title'), title),
    system_prompt = COALESCE(sqlc.narg('system_prompt'), system_prompt),
    model         = COALESCE(sqlc.narg('model'), model),
    update_time   = now()
WHERE id = @id AND user_id = @user_id
RETURNING *;

-- name: LockConversation :one
-- Taken before DeleteConversation, in its transaction: it waits for an
-- exchange being saved in the conversation (its foreign key check holds a
-- key-share lock on the row), so the delete's next statement sees that
-- exchange and settles it, and an exchange saved after it fails its
-- foreign key check instead of streaming into a deleted conversation.
SELECT id FROM parley.conversations
WHERE id = @id AND user_id = @user_id
FOR UPDATE;

-- name: DeleteConversation :one
-- Messages go with it through ON DELETE CASCADE. Answers still streaming in
-- it first give back what they hold in token_usage, as FinishMessage would:
-- the reservation and the concurrency slot are released, and the prompt
-- (its estimate, saved with the answer) and the text saved so far (about
-- 4 characters a token) are charged. It returns how many
-- conversations it deleted (0 or 1) and the generation ids of those
-- answers, so their instances can be told to stop. The streaming rows are
-- locked first, so an answer that ends concurrently is settled once:
-- either by FinishMessage (it is then no longer streaming here) or here
-- (FinishMessage then finds nothing to end). Run it after LockConversation
-- in one transaction: alone, its snapshot could miss an exchange that
-- commits while it waits for the row, whose cascade would then delete an
-- answer without settling it.
WITH streaming AS (
    SELECT m.id, m.user_id, m.create_time, m.reserved_tokens, m.generation_id,
           m.prompt_tokens + ceil(length(m.content) / 4.0)::bigint AS estimated_tokens
    FROM parley.messages m
    WHERE m.conversation_id = @id AND m.user_id = @user_id AND m.status = 'streaming'
    FOR UPDATE
), released AS (
    SELECT user_id, date_trunc('month', create_time AT TIME ZONE 'UTC')::date AS month,
           sum(reserved_tokens) AS tokens, sum(estimated_tokens) AS used, count(*) AS answers
    FROM streaming GROUP BY 1, 2
), settle AS (
    UPDATE parley.token_usage u
    SET used_tokens = u.used_tokens + r.used,
        reserved_tokens = GREATEST(u.reserved_tokens - r.tokens, 0),
        active_generations = GREATEST(u.active_generations - r.answers, 0)
    FROM released r
    WHERE u.user_id = r.user_id AND u.month = r.month
), deleted AS (
    DELETE FROM parley.conversations c
    WHERE c.id = @id AND c.user_id = @user_id
    RETURNING c.id
)
SELECT (SELECT count(*) FROM deleted)::bigint AS deleted,
       COALESCE((SELECT array_agg(s.generation_id) FROM streaming s WHERE s.generation_id IS NOT NULL), '{}')::uuid[] AS generation_ids;

-- name: SetActiveLeaf :execrows
UPDATE parley.conversations SET active_leaf_id = @leaf_id, update_time = now()
WHERE id = @id AND user_id = @user_id;

-- name: SaveTitle :one
-- A generated title, in one statement with what writing it cost: the
-- tokens count against the month's quota (also when no title came), and
-- the title never overwrites one the user chose meanwhile. It returns
-- whether the title was set.
WITH charge AS (
    INSERT INTO parley.token_usage AS u (user_id, month, used_tokens)
    SELECT @user_id, @month, @tokens::bigint WHERE @tokens::bigint > 0
    ON CONFLICT (user_id, month) DO UPDATE SET used_tokens = u.used_tokens + EXCLUDED.used_tokens
), titled AS (
    UPDATE parley.conversations SET title = @title, update_time = now()
    WHERE id = @id AND user_id = @user_id AND title = '' AND @title <> ''
    RETURNING 1
)
SELECT count(*) > 0 AS set FROM titled;

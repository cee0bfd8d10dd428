-- name: CreateConversation :one
-- A repeated (user_id, request_id) returns the row the first call created:
-- the no-op update makes RETURNING yield the existing row on conflict.
INSERT INTO parley.conversations (user_id, title, system_prompt, model, request_id)
VALUES (@user_id, @title, @system_prompt, @model, sqlc.narg('request_id'))
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

-- name: DeleteConversation :execrows
-- Messages go with it through ON DELETE CASCADE.
DELETE FROM parley.conversations
WHERE id = @id AND user_id = @user_id;

-- name: SetActiveLeaf :execrows
UPDATE parley.conversations SET active_leaf_id = @leaf_id, update_time = now()
WHERE id = @id AND user_id = @user_id;

-- name: SetTitleIfEmpty :execrows
-- A generated title never overwrites one the user chose meanwhile.
UPDATE parley.conversations SET title = @title, update_time = now()
WHERE id = @id AND user_id = @user_id AND title = '';

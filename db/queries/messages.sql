-- name: ListMessages :many
-- Keyset pagination, oldest first: the cursor is the (create_time, id) of the
-- last row of the previous page.
SELECT * FROM parley.messages
WHERE conversation_id = @conversation_id AND user_id = @user_id
  AND (sqlc.narg('after_time')::timestamptz IS NULL
       OR (create_time, id) > (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::uuid))
ORDER BY create_time, id
LIMIT @page_limit;

-- name: InsertMessage :one
INSERT INTO parley.messages (
    conversation_id, user_id, parent_id, role, content, status, model,
    client_message_id, generation_id
) VALUES (
    @conversation_id, @user_id, sqlc.narg('parent_id'), @role, @content, @status, @model,
    sqlc.narg('client_message_id'), sqlc.narg('generation_id')
)
RETURNING *;

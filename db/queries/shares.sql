-- Share links. Every statement but GetShare takes the owner's user id;
-- GetShare is the public read, and the id is the secret.

-- name: GetShareArtifactVersions :many
-- The artifact versions a snapshot shows: keys are "<artifact id>:<version>".
SELECT v.artifact_id, v.version, v.title, v.content, a.kind, a.language
FROM parley.artifact_versions v
JOIN parley.artifacts a ON a.id = v.artifact_id
WHERE v.artifact_id = ANY (@artifact_ids::uuid[])
  AND (v.artifact_id::text || ':' || v.version::text) = ANY (@keys::text[])
  AND v.user_id = @user_id AND a.user_id = @user_id;

-- name: InsertShare :one
-- Saves a snapshot; no row unless the user owns the conversation.
INSERT INTO parley.shares (id, user_id, conversation_id, title, include_system_prompt, message_count, snapshot)
SELECT @id, c.user_id, c.id, @title, @include_system_prompt, @message_count, @snapshot
FROM parley.conversations c
WHERE c.id = @conversation_id AND c.user_id = @user_id
RETURNING id, user_id, conversation_id, title, include_system_prompt, message_count, create_time;

-- name: GetShare :one
SELECT snapshot, create_time FROM parley.shares WHERE id = @id;

-- name: ListShares :many
-- A page of the user's shares (of one conversation when conversation_id is
-- set), newest first.
SELECT id, user_id, conversation_id, title, include_system_prompt, message_count, create_time
FROM parley.shares
WHERE user_id = @user_id
  AND (sqlc.narg('conversation_id')::uuid IS NULL OR conversation_id = sqlc.narg('conversation_id')::uuid)
  AND (sqlc.narg('after_time')::timestamptz IS NULL
       OR (create_time, id) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::text))
ORDER BY create_time DESC, id DESC
LIMIT @page_limit;

-- name: DeleteShare :execrows
DELETE FROM parley.shares WHERE id = @id AND user_id = @user_id;

-- name: CountShares :one
-- How many live shares one of the user's conversations has.
SELECT count(*) FROM parley.shares WHERE conversation_id = @conversation_id AND user_id = @user_id;

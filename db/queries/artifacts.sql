-- Artifacts and their versions. The search vectors of parley.artifacts are
-- never read here: every query names its columns.

-- name: CreateArtifact :one
-- Saves an artifact and its version 1 in one statement. Nothing is saved
-- unless the conversation (if any) is the user's and the message (if any)
-- is in it; a repeated (user_id, request_id) saves nothing either, and the
-- caller then looks the first artifact up by its request id.
WITH link AS (
    SELECT
        (SELECT c.id FROM parley.conversations c
         WHERE c.id = sqlc.narg('conversation_id')::uuid AND c.user_id = sqlc.arg('user_id')) AS conversation_id,
        (SELECT m.id FROM parley.messages m
         WHERE m.id = sqlc.narg('message_id')::uuid AND m.user_id = sqlc.arg('user_id')
           AND m.conversation_id = sqlc.narg('conversation_id')::uuid) AS message_id
), ins AS (
    INSERT INTO parley.artifacts (user_id, title, kind, language, content, conversation_id, message_id, request_id)
    SELECT sqlc.arg('user_id'), sqlc.arg('title'), sqlc.arg('kind'), sqlc.arg('language'), sqlc.arg('content'),
           link.conversation_id, link.message_id, sqlc.narg('request_id')
    FROM link
    WHERE (sqlc.narg('conversation_id')::uuid IS NULL OR link.conversation_id IS NOT NULL)
      AND (sqlc.narg('message_id')::uuid IS NULL OR link.message_id IS NOT NULL)
    ON CONFLICT (user_id, request_id) DO NOTHING
    RETURNING id, user_id, title, kind, language, latest_version, conversation_id, message_id, create_time, update_time
), ver AS (
    INSERT INTO parley.artifact_versions (artifact_id, version, user_id, title, content, author, conversation_id, message_id, create_time)
    SELECT ins.id, 1, ins.user_id, ins.title, sqlc.arg('content'), sqlc.arg('author'), ins.conversation_id, ins.message_id, ins.create_time
    FROM ins
    RETURNING artifact_id, author, create_time
)
SELECT ins.id, ins.user_id, ins.title, ins.kind, ins.language, ins.latest_version, ins.conversation_id, ins.message_id,
       ins.create_time, ins.update_time, ver.author
FROM ins JOIN ver ON ver.artifact_id = ins.id;

-- name: GetArtifactIDByRequestID :one
SELECT id FROM parley.artifacts
WHERE user_id = @user_id AND request_id = @request_id;

-- name: GetArtifact :one
-- An artifact and one of its versions (the latest when version is NULL).
SELECT a.id, a.user_id, a.title, a.kind, a.language, a.latest_version, a.conversation_id, a.message_id,
       a.create_time, a.update_time,
       v.version, v.title AS version_title, v.content, v.author,
       v.conversation_id AS version_conversation_id, v.message_id AS version_message_id,
       v.create_time AS version_create_time
FROM parley.artifacts a
JOIN parley.artifact_versions v ON v.artifact_id = a.id
WHERE a.id = @id AND a.user_id = @user_id
  AND v.version = COALESCE(sqlc.narg('version')::integer, a.latest_version);

-- name: GetArtifactHead :one
-- An artifact without its content: its kind, to check an edit's content,
-- and its latest version, to tell a conflict from an absent artifact.
SELECT id, user_id, title, kind, language, latest_version, conversation_id, message_id, create_time, update_time
FROM parley.artifacts
WHERE id = @id AND user_id = @user_id;

-- name: ListArtifacts :many
-- Keyset pagination, newest update first: the cursor is the
-- (update_time, id) of the last row of the previous page.
SELECT id, user_id, title, kind, language, latest_version, conversation_id, message_id, create_time, update_time
FROM parley.artifacts
WHERE user_id = @user_id
  AND (sqlc.narg('kind')::text IS NULL OR kind = sqlc.narg('kind')::text)
  AND (sqlc.narg('after_time')::timestamptz IS NULL
       OR (update_time, id) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::uuid))
ORDER BY update_time DESC, id DESC
LIMIT @page_limit;

-- name: ListConversationArtifacts :many
-- ListArtifacts of one conversation, on its own index.
SELECT id, user_id, title, kind, language, latest_version, conversation_id, message_id, create_time, update_time
FROM parley.artifacts
WHERE conversation_id = @conversation_id AND user_id = @user_id
  AND (sqlc.narg('kind')::text IS NULL OR kind = sqlc.narg('kind')::text)
  AND (sqlc.narg('after_time')::timestamptz IS NULL
       OR (update_time, id) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::uuid))
ORDER BY update_time DESC, id DESC
LIMIT @page_limit;

-- name: AddArtifactVersion :one
-- Saves the next version and makes it the artifact's latest, in one
-- statement. With a base version, nothing is saved unless it is still the
-- latest: a concurrent writer holding the row lock makes this one re-read
-- the row, see the new latest_version and save nothing. The version's
-- conversation and message are kept only if they are the user's.
WITH link AS (
    SELECT
        (SELECT c.id FROM parley.conversations c
         WHERE c.id = sqlc.narg('conversation_id')::uuid AND c.user_id = sqlc.arg('user_id')) AS conversation_id,
        (SELECT m.id FROM parley.messages m
         WHERE m.id = sqlc.narg('message_id')::uuid AND m.user_id = sqlc.arg('user_id')) AS message_id
), head AS (
    UPDATE parley.artifacts a
    SET latest_version = a.latest_version + 1,
        title = COALESCE(sqlc.narg('title'), a.title),
        content = sqlc.arg('content'),
        update_time = now()
    WHERE a.id = sqlc.arg('id') AND a.user_id = sqlc.arg('user_id')
      AND (sqlc.narg('base_version')::integer IS NULL OR a.latest_version = sqlc.narg('base_version')::integer)
    RETURNING a.id, a.user_id, a.title, a.kind, a.language, a.latest_version, a.conversation_id, a.message_id,
              a.create_time, a.update_time
), ver AS (
    INSERT INTO parley.artifact_versions (artifact_id, version, user_id, title, content, author, conversation_id, message_id, create_time)
    SELECT head.id, head.latest_version, head.user_id, head.title, sqlc.arg('content'), sqlc.arg('author'),
           link.conversation_id, link.message_id, head.update_time
    FROM head CROSS JOIN link
    RETURNING artifact_id, conversation_id, message_id
)
SELECT head.id, head.user_id, head.title, head.kind, head.language, head.latest_version, head.conversation_id, head.message_id,
       head.create_time, head.update_time,
       ver.conversation_id AS version_conversation_id, ver.message_id AS version_message_id
FROM head JOIN ver ON ver.artifact_id = head.id;

-- name: ListArtifactVersions :many
-- Newest first, keyset on the version number; the content stays behind
-- (octet_length reads its size from the TOAST header).
SELECT v.artifact_id, v.version, v.title, v.author, v.conversation_id, v.message_id, v.create_time,
       octet_length(v.content)::integer AS content_bytes
FROM parley.artifact_versions v
WHERE v.artifact_id = @artifact_id AND v.user_id = @user_id
  AND (sqlc.narg('before_version')::integer IS NULL OR v.version < sqlc.narg('before_version')::integer)
ORDER BY v.version DESC
LIMIT @page_limit;

-- name: DeleteArtifact :execrows
-- Its versions go with it through ON DELETE CASCADE.
DELETE FROM parley.artifacts
WHERE id = @id AND user_id = @user_id;

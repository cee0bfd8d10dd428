-- name: InsertAttachments :copyfrom
INSERT INTO parley.attachments (
    id, message_id, conversation_id, user_id, position, name, content_type, kind,
    size_bytes, width, height, sha256, content, object_key, create_time
) VALUES (
    @id, @message_id, @conversation_id, @user_id, @position, @name, @content_type, @kind,
    @size_bytes, @width, @height, @sha256, @content, @object_key, @create_time
);

-- name: GetAttachment :one
-- One of the user's attachments with its content (NULL when in object storage).
SELECT * FROM parley.attachments WHERE id = @id AND user_id = @user_id;

-- name: ListMessageAttachments :many
-- A message's attachments with their content, in the order they were sent.
SELECT * FROM parley.attachments
WHERE message_id = @message_id AND user_id = @user_id
ORDER BY position;

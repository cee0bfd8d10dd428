-- Feedback on answers. The service checks the message is an ended answer
-- of the user's first (chat.Service.RateMessage); every statement still
-- takes the user id.

-- name: UpsertRating :one
-- Sets or changes the user's rating of a message of theirs; no row when
-- the message is not the user's (or is gone).
INSERT INTO parley.message_ratings (message_id, user_id, rating, comment, tags)
SELECT m.id, m.user_id, @rating, @comment, @tags::text[]
FROM parley.messages m
WHERE m.id = @message_id AND m.user_id = @user_id
ON CONFLICT (message_id, user_id) DO UPDATE
    SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, tags = EXCLUDED.tags, update_time = now()
RETURNING *;

-- name: DeleteRating :execrows
DELETE FROM parley.message_ratings
WHERE message_id = @message_id AND user_id = @user_id;

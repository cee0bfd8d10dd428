-- +goose Up
-- Feedback: a user's thumbs up or down on an answer, with an optional
-- comment and tags. One row per user and message (RATING_NONE deletes it);
-- the row goes with its message, and so with its conversation and its user
-- (ON DELETE CASCADE, run as the owner).
CREATE TABLE parley.message_ratings (
    message_id  uuid        NOT NULL REFERENCES parley.messages (id) ON DELETE CASCADE,
    user_id     uuid        NOT NULL,
    rating      text        NOT NULL CHECK (rating IN ('up', 'down')),
    comment     text        NOT NULL DEFAULT '',
    tags        text[]      NOT NULL DEFAULT '{}',
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    -- Also serves the cascade from messages and the join of ListBranch.
    PRIMARY KEY (message_id, user_id)
);

-- Serves the export and the counts by day.
CREATE INDEX message_ratings_user_idx ON parley.message_ratings (user_id);

ALTER TABLE parley.message_ratings ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON parley.message_ratings TO parley_app;
CREATE POLICY parley_app_all ON parley.message_ratings FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- For operators (run as the schema's owner; parley_app is not granted it):
-- ratings per model that wrote the answer and per UTC day the rating was
-- last set. A changed rating counts once, on the day of its last change.
-- security_invoker: a role that is granted the view still reads it through
-- the tables' row level security, so the view opens nothing to Supabase's
-- Data API roles.
CREATE VIEW parley.message_rating_counts WITH (security_invoker = true) AS
SELECT m.model,
       (r.update_time AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE r.rating = 'up')   AS up,
       count(*) FILTER (WHERE r.rating = 'down') AS down
FROM parley.message_ratings r
JOIN parley.messages m ON m.id = r.message_id
GROUP BY m.model, (r.update_time AT TIME ZONE 'UTC')::date;

-- +goose Down
DROP VIEW parley.message_rating_counts;
DROP TABLE parley.message_ratings;

-- +goose Up
-- A user's profile: what their newest token said about them (email,
-- anonymous) and their preferences. It is created by the first call that
-- needs it (UserService), so a user who never calls it has none, and
-- everything else works without one.
CREATE TABLE parley.profiles (
    user_id               uuid        PRIMARY KEY,
    email                 text        NOT NULL DEFAULT '',
    anonymous             boolean     NOT NULL DEFAULT false,
    display_name          text        NOT NULL DEFAULT '' CHECK (char_length(display_name) <= 100),
    -- Used by CreateConversation when the request names no model; checked
    -- against the server's models and the plan when set, and again (as any
    -- conversation's model) when an answer starts.
    default_model         text        NOT NULL DEFAULT '',
    default_system_prompt text        NOT NULL DEFAULT '' CHECK (char_length(default_system_prompt) <= 8000),
    create_time           timestamptz NOT NULL DEFAULT now(),
    update_time           timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE parley.profiles ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON parley.profiles TO parley_app;
CREATE POLICY parley_app_all ON parley.profiles FOR ALL TO parley_app USING (true) WITH CHECK (true);
-- DeleteMe deletes a user's runs and usage rows too (the rows that hang
-- off runs go by ON DELETE CASCADE, which runs as the owner).
GRANT DELETE ON parley.agent_runs TO parley_app;
GRANT DELETE ON parley.token_usage TO parley_app;

-- +goose Down
REVOKE DELETE ON parley.token_usage FROM parley_app;
REVOKE DELETE ON parley.agent_runs FROM parley_app;
DROP TABLE parley.profiles;

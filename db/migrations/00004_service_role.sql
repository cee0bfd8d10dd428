-- +goose Up
-- Two roles reach Parley's schema and no other: the owner, which runs the
-- migrations (and so owns the tables and bypasses their row level
-- security), and parley_app, whose members `parley serve` logs in as. It
-- gets exactly the privileges the queries in db/queries use, and a policy
-- per table that shows it every row (every query filters by user itself),
-- so a leaked service password can read and write rows but cannot change
-- the schema, read goose's table or truncate anything. Supabase's Data API
-- roles (anon, authenticated, service_role) and PUBLIC get nothing; row
-- level security, on every table, hides every row from a role without a
-- policy even if someone grants it the tables later. A table added by a
-- later migration grants what it needs to parley_app and adds its policy
-- (TestServiceRole lists them).

-- Created here when missing (roles belong to the whole server, so another
-- database may have created it already), so that the grants below are in
-- place before anyone logs in as a member of it.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parley_app') THEN
        BEGIN
            CREATE ROLE parley_app NOLOGIN;
        EXCEPTION
            -- Another database on this server was migrated at the same moment.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role parley_app does not exist and % may not create roles', current_user
                    USING HINT = 'Have an administrator run CREATE ROLE parley_app NOLOGIN, then run parley migrate up again.';
        END;
    END IF;
END $$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA parley TO parley_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON parley.conversations TO parley_app;
-- No DELETE: a conversation's messages go through ON DELETE CASCADE, which
-- runs as the owner.
GRANT SELECT, INSERT, UPDATE ON parley.messages TO parley_app;
GRANT SELECT, INSERT, UPDATE ON parley.token_usage TO parley_app;

CREATE POLICY parley_app_all ON parley.conversations FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.messages FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.token_usage FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- goose's version table too (it has no policy: only the owner reads it).
ALTER TABLE parley.goose_db_version ENABLE ROW LEVEL SECURITY;

-- Take back whatever was granted before, including the grants and default
-- privileges Supabase's guide to exposing a custom schema has an operator
-- add (ALTER DEFAULT PRIVILEGES applies to the role running this, the
-- owner). The Supabase roles exist only on Supabase.
REVOKE ALL ON SCHEMA parley FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA parley FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA parley FROM PUBLIC;
-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON SCHEMA parley FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA parley FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA parley FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL ROUTINES IN SCHEMA parley FROM %I', r);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA parley REVOKE ALL ON TABLES FROM %I', r);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA parley REVOKE ALL ON SEQUENCES FROM %I', r);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA parley REVOKE ALL ON ROUTINES FROM %I', r);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA parley REVOKE ALL ON TYPES FROM %I', r);
        END IF;
    END LOOP;
END $$;
-- +goose StatementEnd

-- +goose Down
-- The role stays: other databases on the server may use it.
DROP POLICY parley_app_all ON parley.token_usage;
DROP POLICY parley_app_all ON parley.messages;
DROP POLICY parley_app_all ON parley.conversations;
REVOKE ALL ON ALL TABLES IN SCHEMA parley FROM parley_app;
REVOKE ALL ON SCHEMA parley FROM parley_app;
ALTER TABLE parley.goose_db_version DISABLE ROW LEVEL SECURITY;

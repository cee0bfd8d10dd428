package db

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverVersion is goose's version of the migration that creates River's
// tables (see riverMigration); the SQL files are numbered around it.
const riverVersion = 9

// RiverSchemaVersion is the River migration (main line) Parley's schema is
// at. It is pinned, not "the latest", so a database's shape follows from
// goose's version alone: upgrading River to a release with new River
// migrations means a new goose migration that migrates River up to the new
// version (TestRiverSchemaVersion fails until there is one).
const RiverSchemaVersion = 8

// riverGrantsSQL gives ServiceRole what River's client (internal/riverq)
// does to River's tables, and nothing else, under the same rules as
// 00004_service_role.sql: row level security on every table, a policy
// showing parley_app every row of the tables it uses. River's reindexer
// would need to own the tables, so the client runs without it; its version
// table (river_migration) and its SQLite-only outbox (river_notification)
// are the owner's business.
const riverGrantsSQL = `
GRANT SELECT, INSERT, UPDATE, DELETE ON parley.river_job, parley.river_leader, parley.river_queue TO parley_app;
GRANT USAGE ON SEQUENCE parley.river_job_id_seq TO parley_app;
REVOKE ALL ON FUNCTION parley.river_job_state_in_bitmask(bit, parley.river_job_state) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION parley.river_job_state_in_bitmask(bit, parley.river_job_state) TO parley_app;

ALTER TABLE parley.river_job ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.river_leader ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.river_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.river_migration ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.river_notification ENABLE ROW LEVEL SECURITY;

CREATE POLICY parley_app_all ON parley.river_job FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.river_leader FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.river_queue FOR ALL TO parley_app USING (true) WITH CHECK (true);`

// riverMigration is goose migration 9: River's own migrations (pinned to
// RiverSchemaVersion) into Parley's schema, then the service role's grants
// on them. It runs inside goose's run, so under goose's advisory lock, in
// order with the SQL files, and DownTo(0) removes River's tables as well.
//
// River applies each of its migrations in a transaction of its own (one of
// them adds an enum value that a later statement uses, which Postgres does
// not allow in the transaction that added it), so this migration runs
// outside goose's transaction, on a one-connection pool of its own: River's
// migrator speaks pgx, goose database/sql. A run interrupted halfway is
// resumed by the next one (River records each of its versions).
func riverMigration(databaseURL string, log *slog.Logger) *goose.Migration {
	up := func(ctx context.Context, _ *sql.DB) error {
		return withRiverMigrator(ctx, databaseURL, log, func(pool *pgxpool.Pool, m *rivermigrate.Migrator[pgx.Tx]) error {
			if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{TargetVersion: RiverSchemaVersion}); err != nil {
				return fmt.Errorf("river migrations: %w", err)
			}
			// One Exec of several statements is one implicit transaction.
			if _, err := pool.Exec(ctx, riverGrantsSQL); err != nil {
				return fmt.Errorf("river grants: %w", err)
			}
			return nil
		})
	}
	down := func(ctx context.Context, _ *sql.DB) error {
		return withRiverMigrator(ctx, databaseURL, log, func(_ *pgxpool.Pool, m *rivermigrate.Migrator[pgx.Tx]) error {
			// -1: every River migration down, its version table included;
			// the policies and grants go with the tables.
			if _, err := m.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1}); err != nil {
				return fmt.Errorf("river migrations down: %w", err)
			}
			return nil
		})
	}
	return goose.NewGoMigration(riverVersion, &goose.GoFunc{RunDB: up}, &goose.GoFunc{RunDB: down})
}

// withRiverMigrator runs fn with a River migrator targeting Parley's schema
// on a one-connection pool that it closes afterwards.
func withRiverMigrator(ctx context.Context, databaseURL string, log *slog.Logger, fn func(*pgxpool.Pool, *rivermigrate.Migrator[pgx.Tx]) error) error {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect for river migrations: %w", err)
	}
	defer pool.Close()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: Schema, Logger: log})
	if err != nil {
		return err
	}
	return fn(pool, m)
}

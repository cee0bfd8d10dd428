// Package db holds Parley's SQL: goose migrations embedded in the binary
// (so `parley migrate up` needs no files beside it) and the queries sqlc
// compiles into internal/store/sqlcgen. River's tables (the task queue,
// internal/riverq) are created by goose migration 9, which runs River's own
// migrations (see river.go), so one `migrate up` sets up everything.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the Postgres schema that holds every Parley table.
const Schema = "parley"

// ServiceRole is the role the migrations give exactly the privileges
// `parley serve` uses, and row level security policies that let it see
// every row. They create it (NOLOGIN) when it is missing; the service logs
// in as a member of it, so it owns nothing and cannot change the schema.
const ServiceRole = "parley_app"

// versionTable tracks applied migrations inside Parley's own schema, so the
// public schema (exposed by Supabase's Data API) stays untouched.
const versionTable = Schema + ".goose_db_version"

// Migrator applies the embedded migrations to one database.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// NewMigrator opens a connection to databaseURL for migrations. A Postgres
// advisory lock keeps two instances from migrating at once. Close it after use.
func NewMigrator(ctx context.Context, databaseURL string, log *slog.Logger) (*Migrator, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	sqlDB := stdlib.OpenDB(*cfg)
	// The version table lives in our schema, which must exist before goose
	// looks for it.
	if _, err := sqlDB.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("create schema %s: %w", Schema, err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithTableName(versionTable),
		goose.WithSessionLocker(locker),
		goose.WithSlog(log),
		goose.WithGoMigrations(riverMigration(databaseURL, log)),
	)
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{db: sqlDB, provider: provider}, nil
}

// Up applies every pending migration and returns how many it applied.
func (m *Migrator) Up(ctx context.Context) (int, error) {
	results, err := m.provider.Up(ctx)
	return len(results), err
}

// Down rolls back the most recent migration.
func (m *Migrator) Down(ctx context.Context) error {
	_, err := m.provider.Down(ctx)
	if errors.Is(err, goose.ErrNoNextVersion) {
		return errors.New("no migration to roll back")
	}
	return err
}

// DownTo rolls back every applied migration above version (0: all of them).
func (m *Migrator) DownTo(ctx context.Context, version int64) error {
	_, err := m.provider.DownTo(ctx, version)
	return err
}

// Status writes one line per migration: its version, file and state.
func (m *Migrator) Status(ctx context.Context, w io.Writer) error {
	statuses, err := m.provider.Status(ctx)
	if err != nil {
		return err
	}
	for _, s := range statuses {
		state := "pending"
		if s.State == goose.StateApplied {
			state = "applied " + s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		name := s.Source.Path
		if s.Source.Type == goose.TypeGo && s.Source.Version == riverVersion {
			name = fmt.Sprintf("(Go) River's migrations to %d", RiverSchemaVersion)
		}
		fmt.Fprintf(w, "%05d  %-40s %s\n", s.Source.Version, name, state)
	}
	return nil
}

// Close releases the connection.
func (m *Migrator) Close() error { return m.db.Close() }

// MigrateUp is NewMigrator, Up and Close in one call.
func MigrateUp(ctx context.Context, databaseURL string, log *slog.Logger) error {
	m, err := NewMigrator(ctx, databaseURL, log)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Up(ctx)
	return err
}

// Package store is the one place that speaks SQL. It owns the pgx pool, runs
// the sqlc-generated queries in sqlcgen (which no other package imports),
// converts rows to domain types and translates driver errors to apperr codes.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// Store implements the domain packages' storage interfaces on Postgres.
type Store struct {
	pool *pgxpool.Pool
	q    *sqlcgen.Queries
}

// Options tune the connection pool.
type Options struct {
	// QueryExecMode must avoid named prepared statements behind Supavisor or
	// PgBouncer in transaction mode (use exec or simple_protocol there);
	// zero keeps pgx's default (cache_statement).
	QueryExecMode pgx.QueryExecMode
	// MaxConns caps the pool (0: pgx's default, max(4, GOMAXPROCS)).
	// Mind the database's (or Supavisor's) connection limit per instance.
	MaxConns int32
	// StatementTimeout makes the server cancel any statement of the pool
	// that runs longer (query_canceled, which the store reports as
	// apperr.DeadlineExceeded), so one bad query cannot hold a connection
	// for ever. It is sent as a startup parameter of every connection,
	// overriding the URL's, the role's and the database's setting; zero
	// sends none and keeps those.
	StatementTimeout time.Duration
	// Tracer traces the pool's queries, batches and connections
	// (OpenTelemetry's otelpgx when tracing is on); nil traces nothing.
	// pgx takes one tracer per connection config: one the URL's config
	// already has is kept, beside this one.
	Tracer pgx.QueryTracer
}

// Open creates a pool for databaseURL. It does not connect: the first query
// does, so a server can accept connections before the database answers.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, errors.New("store: invalid database URL")
	}
	if opts.QueryExecMode != 0 {
		cfg.ConnConfig.DefaultQueryExecMode = opts.QueryExecMode
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.StatementTimeout > 0 {
		// Milliseconds, the parameter's unit; never 0, which would disable it.
		ms := max(opts.StatementTimeout.Milliseconds(), 1)
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(ms, 10)
	}
	if opts.Tracer != nil {
		if cfg.ConnConfig.Tracer != nil {
			cfg.ConnConfig.Tracer = multitracer.New(cfg.ConnConfig.Tracer, opts.Tracer)
		} else {
			cfg.ConnConfig.Tracer = opts.Tracer
		}
	}
	cfg.AfterConnect = PrepareConn
	// One connection is opened in the background at once, so the first
	// request after a cold start does not pay for a new backend.
	cfg.MinConns = 1
	// Cloud Run scales to zero: do not hold idle connections for long.
	cfg.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: create pool: %w", err)
	}
	return New(pool), nil
}

// PrepareConn readies a new connection as Open's pool does (ids move as 16
// binary bytes, see uuid.go). Pools built elsewhere for a Store (tests,
// tools) set it as their pgxpool.Config.AfterConnect.
func PrepareConn(_ context.Context, conn *pgx.Conn) error {
	registerUUID(conn.TypeMap())
	return nil
}

// New wraps an existing pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, q: sqlcgen.New(pool)}
}

// Pool returns the underlying pool, for tests that query or hold
// connections directly (health checks use Ping).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// interpretError translates driver errors into application errors, once,
// for every query. what names the thing looked for, for NotFound messages.
func interpretError(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.New(apperr.NotFound, "%s not found", what)
	}
	if errors.Is(err, context.Canceled) {
		return apperr.Wrap(err, apperr.Canceled, "request canceled")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apperr.Wrap(err, apperr.DeadlineExceeded, "the database did not answer in time")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return apperr.Wrap(err, apperr.Conflict, "%s already exists", what)
		case "23503": // foreign_key_violation
			return apperr.Wrap(err, apperr.NotFound, "%s not found", what)
		case "22P02", "22001", "23514": // bad text representation, too long, check violation
			return apperr.Wrap(err, apperr.Invalid, "invalid %s", what)
		case "57014": // query_canceled (statement timeout)
			return apperr.Wrap(err, apperr.DeadlineExceeded, "the database did not answer in time")
		case "57P01", "57P02", "57P03", "53300": // admin/crash shutdown, cannot connect now, too many connections
			return apperr.Wrap(err, apperr.Unavailable, "the database is unavailable; try again")
		}
		if strings.HasPrefix(pgErr.Code, "08") { // connection exception
			return apperr.Wrap(err, apperr.Unavailable, "the database is unavailable; try again")
		}
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if pgconn.SafeToRetry(err) || isConnError(err) {
		return apperr.Wrap(err, apperr.Unavailable, "the database is unavailable; try again")
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

func isConnError(err error) bool {
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr)
}

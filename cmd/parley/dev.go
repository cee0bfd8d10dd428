package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/pglocal"
)

// devIssuer is the issuer of dev tokens. It is not a Supabase URL, so a
// dev token can never pass a production verifier.
const devIssuer = "http://parley.localhost/auth/v1"

// devUserID is the user `parley dev` prints a token for.
var devUserID = uuid.MustParse("00000000-0000-4000-8000-00000000d0e5")

const defaultDataDir = ".parley"

func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev")
	dataDir := fs.String("data-dir", defaultDataDir, "where dev state (database, signing key) is kept")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, config.ModeDev)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	// The port is taken first, so a second `make dev` fails before it
	// touches the dev database.
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	if cfg.DatabaseURL == "" {
		pg, url, err := startDevPostgres(ctx, *dataDir, log)
		if err != nil {
			return err
		}
		defer func() {
			if err := pg.Stop(); err != nil {
				log.Warn("stopping the dev database", "err", err)
			}
		}()
		cfg.DatabaseURL = url
	}
	if err := db.MigrateUp(ctx, cfg.DatabaseURL, log); err != nil {
		return fmt.Errorf("dev: migrate: %w", err)
	}

	key, err := auth.LoadOrCreateDevKey(*dataDir)
	if err != nil {
		return fmt.Errorf("dev: signing key: %w", err)
	}
	// The same verifier as production, fed the dev key's JWKS.
	verifier, err := auth.NewStaticVerifier(auth.Config{Issuer: devIssuer, Logger: log}, key.JWKS())
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	token, err := key.Sign(devIssuer, devUserID, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	printDevBanner(stdout, "http://"+ln.Addr().String(), token, *dataDir)
	return serve(ctx, cfg, app.Options{
		Log: log, Listener: ln, Verifier: verifier,
		Routes: map[string]http.Handler{"GET " + devTokenPath: devTokenHandler(key, cfg.AllowedOrigins)},
	})
}

// startDevPostgres starts (or restarts) the private dev database kept in
// dataDir/pgdata and returns its URL.
func startDevPostgres(ctx context.Context, dataDir string, log *slog.Logger) (*pglocal.Server, string, error) {
	if _, err := pglocal.FindBinaries(); err != nil {
		return nil, "", fmt.Errorf("dev: no DATABASE_URL and no local PostgreSQL: %w", err)
	}
	abs, err := filepath.Abs(filepath.Join(dataDir, "pgdata"))
	if err != nil {
		return nil, "", err
	}
	// The server log goes to dataDir/postgres.log.
	log.Info("starting the dev database", "data", abs)
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: abs})
	if err != nil {
		return nil, "", fmt.Errorf("dev: start PostgreSQL: %w", err)
	}
	url, err := pg.CreateDatabase(ctx, "parley")
	if err != nil {
		return nil, "", errors.Join(fmt.Errorf("dev: %w", err), pg.Stop())
	}
	return pg, url, nil
}

func printDevBanner(w io.Writer, baseURL, token, dataDir string) {
	fmt.Fprintf(w, `
Parley dev server: %[1]s   (data in %[3]s; Ctrl-C to stop)

Bearer token for the dev user %[4]s (valid 24h; more with: parley token --sub <uuid>,
or GET %[1]s/dev/token, which the web page uses):

export TOKEN=%[2]s

Try it:
  curl -sS %[1]s/health
  curl -sS -X POST %[1]s/parley.v1.ChatService/CreateConversation \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"title":"Hello"}'
  curl -sS -X POST %[1]s/parley.v1.ChatService/ListConversations \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}'

`, baseURL, token, dataDir, devUserID)
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/server"
	"github.com/parleyhq/parley/internal/store"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if err := parseFlags(newFlagSet("serve"), args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, config.ModeServe)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stdout)
	// The listener opens first so Cloud Run's startup probe connects at
	// once; the pool connects lazily and the JWKS loads in the background.
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(ctx, auth.Config{
		Issuer:      cfg.IssuerURL(),
		JWKSURL:     cfg.JWKSURL(),
		HS256Secret: []byte(cfg.SupabaseJWTSecret),
		Logger:      log,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("auth: %w", err)
	}
	defer verifier.Close()
	return serve(ctx, cfg, log, ln, verifier)
}

func listen(cfg config.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// serve wires the dependencies and runs the HTTP server on ln until ctx ends.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener, verifier *auth.Verifier) error {
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{QueryExecMode: cfg.QueryExecMode})
	if err != nil {
		ln.Close()
		return err
	}
	defer st.Close()

	chatService := chat.NewService(st, nil)
	handler := server.New(server.Deps{
		Log:            log,
		Verifier:       verifier,
		Chat:           rpc.NewChatHandler(chatService),
		Ping:           st.Ping,
		AllowedOrigins: cfg.AllowedOrigins,
	})
	srv := server.NewHTTPServer(handler, log)
	log.Info("listening", "url", "http://"+ln.Addr().String(), "env", cfg.Env, "version", server.Version())
	return server.Serve(ctx, srv, ln, cfg.ShutdownTimeout, log)
}

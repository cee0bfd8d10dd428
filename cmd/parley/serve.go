package main

import (
	"context"
	"io"
	"os"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/memlimit"
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
	// Unless the operator set GOMEMLIMIT, the collector works to stay
	// within the container's memory (internal/memlimit).
	if soft := memlimit.FromContainer(os.DirFS("/"), getenv("GOMEMLIMIT") != ""); soft > 0 {
		log.Info("memory limit from the container", "gomemlimit_bytes", soft)
	}
	return serve(ctx, cfg, app.Options{Log: log})
}

// serve builds the service through the one constructor and runs it until
// ctx ends.
func serve(ctx context.Context, cfg config.Config, opts app.Options) error {
	a, err := app.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

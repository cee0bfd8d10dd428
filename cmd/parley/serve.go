package main

import (
	"context"
	"io"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/config"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if err := parseFlags(newFlagSet("serve"), args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, config.ModeServe)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, app.Options{Log: newLogger(cfg, stdout)})
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

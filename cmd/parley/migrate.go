package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/config"
)

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{errors.New("usage: parley migrate up|down|status")}
	}
	if args[0] != "up" && args[0] != "down" && args[0] != "status" {
		return usageError{fmt.Errorf("unknown migrate command %q: use up, down or status", args[0])}
	}
	cfg, err := loadConfig(getenv, config.ModeMigrate)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stdout)
	m, err := db.NewMigrator(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer m.Close()
	switch args[0] {
	case "up":
		n, err := m.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		log.Info("migrations applied", "count", n)
		return nil
	case "down":
		return m.Down(ctx)
	default:
		return m.Status(ctx, stdout)
	}
}

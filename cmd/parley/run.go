package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/logging"
)

const usage = `Usage: parley <command> [flags]

Commands:
  serve                     run the production server (configured by the environment)
  dev [--data-dir DIR]      run everything locally with no accounts and no keys
  token --sub UUID [--data-dir DIR] [--ttl 24h] [--anonymous]
                            print a dev bearer token for that user
  migrate up|down|status    apply, roll back or list the database migrations

Configuration is read from the environment; see the README.
`

// usageError is a mistake in the command line or configuration: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode is the process status for run's error: 2 for usage and
// configuration mistakes, 1 for other failures.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// run is the whole program. It takes its environment as arguments so that
// tests can run the real server in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("missing command")}
	}
	cmd, rest := args[1], args[2:]
	var err error
	switch cmd {
	case "serve":
		err = runServe(ctx, rest, getenv, stdout)
	case "dev":
		err = runDev(ctx, rest, getenv, stdout, stderr)
	case "token":
		err = runToken(rest, stdout, stderr)
	case "migrate":
		if len(rest) == 1 && isHelpFlag(rest[0]) {
			fmt.Fprint(stdout, migrateUsage)
			return nil
		}
		err = runMigrate(ctx, rest, getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
	var help helpRequested
	if errors.As(err, &help) {
		help.print(stdout)
		return nil
	}
	return err
}

// migrateUsage is `parley migrate -h`: migrate takes a verb, not flags.
const migrateUsage = `Usage: parley migrate up|down|status

  up      apply every pending migration
  down    roll back the newest migration
  status  list the migrations and whether each is applied
`

// isHelpFlag reports whether arg asks for help the way the flag package
// understands it.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

func loadConfig(getenv func(string) string, mode config.Mode) (config.Config, error) {
	cfg, err := config.Load(getenv, mode)
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	noColor := true
	if f, ok := w.(*os.File); ok {
		noColor = !logging.IsTerminal(f)
	}
	return logging.New(w, logging.Options{Format: cfg.LogFormat, Level: cfg.LogLevel, Project: cfg.GoogleCloudProject, NoColor: noColor})
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequested{fs}
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

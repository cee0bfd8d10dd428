// Command parley is the Parley server: a Connect-RPC backend for AI chat
// products. See the README for its subcommands and configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr))
	stop()
	os.Exit(code)
}

package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/auth"
)

// runToken prints a dev bearer token for a user, alone on stdout, so that
// TOKEN=$(parley token --sub ...) works.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token")
	sub := fs.String("sub", "", "the user id (a UUID) the token is for")
	dataDir := fs.String("data-dir", defaultDataDir, "the dev data directory holding the signing key")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
	anonymous := fs.Bool("anonymous", false, "sign it as an anonymous sign-in (is_anonymous), which is on the anonymous plan")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	userID, err := uuid.Parse(*sub)
	if err != nil {
		return usageError{errors.New("--sub must be a user UUID, e.g. --sub " + uuid.NewString())}
	}
	if *ttl <= 0 {
		return usageError{errors.New("--ttl must be positive")}
	}
	key, err := auth.LoadOrCreateDevKey(*dataDir)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	sign := key.Sign
	if *anonymous {
		sign = key.SignAnonymous
	}
	token, err := sign(devIssuer, userID, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

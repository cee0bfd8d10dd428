package pgtest

import (
	"strings"
	"testing"
	"time"
)

func TestPackageDatabaseName(t *testing.T) {
	created := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	name := packageDatabaseName(created)
	child := name + "_123456"
	if len(child) > 63 {
		t.Errorf("%q is longer than Postgres's 63-byte limit", child)
	}
	if a, b := packageDatabaseName(created), packageDatabaseName(created); a == b {
		t.Errorf("two names at the same instant are both %q", a)
	}
	// sweepDatabases must recognise, and date, what pgtest creates.
	for _, n := range []string{name, child} {
		m := testDatabase.FindStringSubmatch(n)
		if m == nil {
			t.Errorf("testDatabase does not match %q", n)
			continue
		}
		if want := "6b06cdc0"; m[1] != want {
			t.Errorf("creation time of %q = %s, want %s", n, m[1], want)
		}
	}
	if testDatabase.MatchString("parley_dev") {
		t.Error("testDatabase matches parley_dev")
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, server, want string
	}{
		{"OK", "postgres://u:secret@db.example:6543/postgres?sslmode=require", "postgres://u:secret@db.example:6543/parley_x?sslmode=require"},
		{"NoPath", "postgresql://127.0.0.1", "postgresql://127.0.0.1/parley_x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withDatabase(tt.server, "parley_x")
			if err != nil || got != tt.want {
				t.Errorf("withDatabase = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("ErrKeywordValue", func(t *testing.T) {
		_, err := withDatabase("host=db password=secret dbname=app", "parley_x")
		if err == nil {
			t.Fatal("no error for a keyword/value connection string")
		}
		if got := err.Error(); strings.Contains(got, "secret") {
			t.Errorf("error reveals the password: %s", got)
		}
	})
}

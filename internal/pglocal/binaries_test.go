package pglocal

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFindBinaries(t *testing.T) {
	dir, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestFindBinariesNone(t *testing.T) {
	_, err := firstWithBinaries([]string{t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	// The message is all a developer without Postgres gets; it must say
	// what to do on each platform.
	for _, want := range []string{"apt-get install postgresql", "brew install postgresql@16", "DATABASE_URL="} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestNewestFirst(t *testing.T) {
	got := newestFirst([]string{
		"/usr/lib/postgresql/9.6/bin",
		"/usr/lib/postgresql/15/bin",
		"/opt/homebrew/opt/postgresql/bin",
		"/usr/lib/postgresql/16/bin",
		"/opt/homebrew/opt/postgresql@17/bin",
	})
	want := []string{
		"/opt/homebrew/opt/postgresql@17/bin",
		"/usr/lib/postgresql/16/bin",
		"/usr/lib/postgresql/15/bin",
		"/usr/lib/postgresql/9.6/bin",
		"/opt/homebrew/opt/postgresql/bin",
	}
	if !slices.Equal(got, want) {
		t.Errorf("newestFirst =\n%q\nwant\n%q", got, want)
	}
}

func TestMajorOf(t *testing.T) {
	tests := []struct {
		name, output, want string
	}{
		{"Debian", "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n", "15"},
		{"Homebrew", "postgres (PostgreSQL) 16.4 (Homebrew)\n", "16"},
		{"Beta", "postgres (PostgreSQL) 18beta1\n", "18"},
		{"Old", "postgres (PostgreSQL) 9.6.24\n", "9.6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := majorOf(tt.output)
			if err != nil || got != tt.want {
				t.Errorf("majorOf = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("ErrUnrecognised", func(t *testing.T) {
		if _, err := majorOf("something else"); err == nil {
			t.Error("no error")
		}
	})
}

func TestCheckVersion(t *testing.T) {
	binDir, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "PG_VERSION"), []byte("9.6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = checkVersion(t.Context(), binDir, dataDir)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL 9.6 cluster") {
		t.Errorf("checkVersion on a 9.6 cluster: %v", err)
	}
}

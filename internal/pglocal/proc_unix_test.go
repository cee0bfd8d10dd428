//go:build unix

package pglocal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookupAccountMissing(t *testing.T) {
	_, err := lookupAccount("parley-no-such-user")
	if err == nil || !strings.Contains(err.Error(), "useradd --system") {
		t.Errorf("lookupAccount of a missing user: %v; want the command that creates it", err)
	}
}

func TestCheckParents(t *testing.T) {
	// A user that owns nothing here, like the postgres user under a
	// root-owned temporary directory.
	stranger := &account{name: "stranger", uid: 54321, gid: 54321}
	parent := tempDir(t)
	dataDir := filepath.Join(parent, "data")

	t.Run("ErrNotEnterable", func(t *testing.T) {
		if err := os.Chmod(parent, 0o700); err != nil {
			t.Fatal(err)
		}
		err := checkParents(dataDir, stranger)
		if err == nil || !strings.Contains(err.Error(), "chmod o+x "+parent) {
			t.Errorf("checkParents under a 0700 directory: %v; want the chmod that fixes it", err)
		}
	})
	t.Run("OK", func(t *testing.T) {
		if err := os.Chmod(parent, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := checkParents(dataDir, stranger); err != nil {
			t.Errorf("checkParents under a 0711 directory: %v", err)
		}
	})
}

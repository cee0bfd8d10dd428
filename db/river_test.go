package db_test

import (
	"testing"

	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/parleyhq/parley/db"
)

// TestRiverSchemaVersion fails when the River in go.mod has migrations
// newer than the schema version Parley's migrations pin: add a goose
// migration that migrates River up to the new version (as migration 9
// does, see db/river.go) and raise db.RiverSchemaVersion.
func TestRiverSchemaVersion(t *testing.T) {
	t.Parallel()
	m, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	versions := m.AllVersions()
	if latest := versions[len(versions)-1].Version; latest != db.RiverSchemaVersion {
		t.Errorf("River's latest migration is %d, Parley's migrations pin %d", latest, db.RiverSchemaVersion)
	}
}

package store_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// userTablesSQL lists the tables of the parley schema that hold a user's
// rows: those with a user_id column (direct = true), and those that
// reference one of them by foreign key, as (table, its column, the
// referenced table, its column). A table added later is walked as soon as
// it has either.
const userTablesSQL = `
SELECT table_schema || '.' || table_name, '', '', ''
FROM information_schema.columns
WHERE table_schema = 'parley' AND column_name = 'user_id'
UNION
SELECT child.oid::regclass::text, ca.attname, parent.oid::regclass::text, pa.attname
FROM pg_constraint fk
JOIN pg_class child ON child.oid = fk.conrelid
JOIN pg_class parent ON parent.oid = fk.confrelid
JOIN pg_attribute ca ON ca.attrelid = fk.conrelid AND ca.attnum = fk.conkey[1]
JOIN pg_attribute pa ON pa.attrelid = fk.confrelid AND pa.attnum = fk.confkey[1]
WHERE fk.contype = 'f' AND child.relnamespace = 'parley'::regnamespace
  AND NOT EXISTS (SELECT FROM information_schema.columns c
                  WHERE c.table_schema = 'parley' AND c.table_name = child.relname AND c.column_name = 'user_id')
  AND EXISTS (SELECT FROM information_schema.columns c
              WHERE c.table_schema = 'parley' AND c.table_name = parent.relname AND c.column_name = 'user_id')
ORDER BY 1, 2`

// userTable is a table of a user's rows and how to count them.
type userTable struct{ table, column, parent, parentColumn string }

func (ut userTable) name() string {
	if ut.column == "" {
		return ut.table
	}
	return ut.table + "." + ut.column
}

// rowsOf returns the ctids of userID's rows of the table: its own rows, or
// those referencing one of the user's rows of the parent.
func rowsOf(t *testing.T, owner *pgxpool.Pool, ut userTable, userID uuid.UUID) []string {
	t.Helper()
	sql := "SELECT ctid::text FROM " + ut.table + " WHERE user_id = $1"
	if ut.column != "" {
		sql = "SELECT c.ctid::text FROM " + ut.table + " c JOIN " + ut.parent + " p ON c." + pgx.Identifier{ut.column}.Sanitize() +
			" = p." + pgx.Identifier{ut.parentColumn}.Sanitize() + " WHERE p.user_id = $1"
	}
	rows, err := owner.Query(t.Context(), sql, userID)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestDeleteUser: deleting a user leaves none of their rows in any table
// that holds a user's rows (those with a user_id column and those that
// reference one by foreign key, which must then be gone, not unlinked),
// keeps every row of another user, and can be repeated.
func TestDeleteUser(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	owner := openPool(t, dbURL, "")
	st := store.New(owner)
	gone, kept := seed(t, st), seed(t, st)

	rows, err := owner.Query(t.Context(), userTablesSQL)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (userTable, error) {
		var ut userTable
		return ut, r.Scan(&ut.table, &ut.column, &ut.parent, &ut.parentColumn)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) == 0 {
		t.Fatal("no table of the parley schema holds a user's rows")
	}
	// How many rows each table had, and how many of them the deleted
	// user's: a row merely unlinked (ON DELETE SET NULL) would no longer
	// count as the user's, so the table's total must drop by as many.
	type before struct {
		mine  int
		total int
	}
	counts := map[string]before{}
	for _, ut := range tables {
		mine := rowsOf(t, owner, ut, gone)
		if len(mine) == 0 {
			t.Errorf("%s: the seed wrote no row of the user: seed it so the test means something", ut.name())
		}
		var total int
		if err := owner.QueryRow(t.Context(), "SELECT count(*) FROM "+ut.table).Scan(&total); err != nil {
			t.Fatal(err)
		}
		counts[ut.name()] = before{mine: len(mine), total: total}
	}

	for range 2 { // the second time finds nothing and is no error
		if _, err := st.DeleteUser(t.Context(), gone); err != nil {
			t.Fatal(err)
		}
	}
	for _, ut := range tables {
		t.Run(ut.name(), func(t *testing.T) {
			if left := rowsOf(t, owner, ut, gone); len(left) != 0 {
				t.Errorf("%d rows of the deleted user are left", len(left))
			}
			var total int
			if err := owner.QueryRow(t.Context(), "SELECT count(*) FROM "+ut.table).Scan(&total); err != nil {
				t.Fatal(err)
			}
			if b := counts[ut.name()]; total != b.total-b.mine {
				t.Errorf("%d rows before, %d of the user's; %d after, want %d", b.total, b.mine, total, b.total-b.mine)
			}
			if len(rowsOf(t, owner, ut, kept)) == 0 {
				t.Errorf("the other user's rows are gone")
			}
		})
	}
}

// exportCounts says, for each table that holds a user's rows, how many of
// them the export document holds; tables left out on purpose map to nil.
var exportCounts = map[string]func(doc exportDoc) int{
	"parley.profiles":      func(d exportDoc) int { return present(d.Profile) },
	"parley.conversations": func(d exportDoc) int { return len(d.Conversations) },
	"parley.messages": func(d exportDoc) int {
		return sumOf(d.Conversations, func(c exportConv) int { return len(c.Messages) })
	},
	"parley.attachments": func(d exportDoc) int {
		return sumOf(d.Conversations, func(c exportConv) int {
			return sumOf(c.Messages, func(m exportMessage) int { return len(m.Attachments) })
		})
	},
	"parley.artifacts": func(d exportDoc) int { return len(d.Artifacts) },
	"parley.artifact_versions": func(d exportDoc) int {
		return sumOf(d.Artifacts, func(a exportArtifact) int { return len(a.Versions) })
	},
	"parley.agent_runs":          func(d exportDoc) int { return len(d.AgentRuns) },
	"parley.agent_steps.run_id":  func(d exportDoc) int { return sumOf(d.AgentRuns, func(r exportRun) int { return len(r.Steps) }) },
	"parley.agent_events.run_id": func(d exportDoc) int { return sumOf(d.AgentRuns, func(r exportRun) int { return len(r.Events) }) },
	"parley.token_usage":         func(d exportDoc) int { return len(d.TokenUsage) },
	"parley.message_ratings": func(d exportDoc) int {
		return sumOf(d.Conversations, func(c exportConv) int {
			return sumOf(c.Messages, func(m exportMessage) int { return present(m.Rating) })
		})
	},
	"parley.shares":        func(d exportDoc) int { return sumOf(d.Conversations, func(c exportConv) int { return len(c.Shares) }) },
	"parley.subscriptions": func(d exportDoc) int { return present(d.Subscription) },
	// Derived from the messages (search vectors), and queued tasks.
	"parley.message_search":      nil,
	"parley.agent_outbox.run_id": nil,
}

type exportDoc struct {
	Profile       json.RawMessage   `json:"profile"`
	Conversations []exportConv      `json:"conversations"`
	Artifacts     []exportArtifact  `json:"artifacts"`
	AgentRuns     []exportRun       `json:"agent_runs"`
	TokenUsage    []json.RawMessage `json:"token_usage"`
	Subscription  json.RawMessage   `json:"subscription"`
}
type exportConv struct {
	Messages []exportMessage   `json:"messages"`
	Shares   []json.RawMessage `json:"shares"`
}
type exportMessage struct {
	Rating      json.RawMessage   `json:"rating"`
	Attachments []json.RawMessage `json:"attachments"`
}
type exportArtifact struct {
	Versions []json.RawMessage `json:"versions"`
}
type exportRun struct {
	Steps  []json.RawMessage `json:"steps"`
	Events []json.RawMessage `json:"events"`
}

func present(raw json.RawMessage) int {
	if len(raw) == 0 || string(raw) == "null" {
		return 0
	}
	return 1
}

func sumOf[T any](xs []T, f func(T) int) int {
	n := 0
	for _, x := range xs {
		n += f(x)
	}
	return n
}

// TestExportHoldsEveryTable: every table that holds a user's rows (walked
// as TestDeleteUser walks them, so a table added later is found) is in the
// export, row for row, or is left out on purpose above.
func TestExportHoldsEveryTable(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	owner := openPool(t, dbURL, "")
	st := store.New(owner)
	userID := seed(t, st)
	seed(t, st) // another user, whose rows must not be counted
	raw, err := st.ExportUser(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	var doc exportDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	rows, err := owner.Query(t.Context(), userTablesSQL)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (userTable, error) {
		var ut userTable
		return ut, r.Scan(&ut.table, &ut.column, &ut.parent, &ut.parentColumn)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ut := range tables {
		count, known := exportCounts[ut.name()]
		switch {
		case !known:
			t.Errorf("%s holds a user's rows but the export does not say how it exports them: add it to ExportUser and to exportCounts", ut.name())
		case count != nil:
			if mine, got := len(rowsOf(t, owner, ut, userID)), count(doc); mine == 0 || got != mine {
				t.Errorf("%s: the user has %d rows, the export %d", ut.name(), mine, got)
			}
		}
	}
}

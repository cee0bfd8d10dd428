package store_test

import (
	"strings"
	"testing"
)

// foreignKeysSQL lists every foreign key of the parley schema and whether
// its columns lead a valid, non-partial index of the referencing table: an
// index whose first n columns are the key's n columns, in any order.
// Without one, every delete or key update on the referenced table scans the
// referencing table (once per row, for a cascade), and so do lookups by the
// key.
const foreignKeysSQL = `
SELECT c.conrelid::regclass::text, c.conname,
       array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS columns,
       EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.conrelid AND i.indisvalid AND i.indpred IS NULL
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey) AS indexed
FROM pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = 'parley'::regnamespace
ORDER BY 1, 2`

// TestForeignKeysIndexed: every foreign key in the parley schema leads an
// index, so a table added later cannot forget one.
func TestForeignKeysIndexed(t *testing.T) {
	t.Parallel()
	rows, err := pgtestPool(t).Query(t.Context(), foreignKeysSQL)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	keys := 0
	for rows.Next() {
		var table, name string
		var columns []string
		var indexed bool
		if err := rows.Scan(&table, &name, &columns, &indexed); err != nil {
			t.Fatal(err)
		}
		keys++
		t.Run(name, func(t *testing.T) {
			if !indexed {
				t.Errorf("no index of %s leads with %v: add one in a migration, e.g. CREATE INDEX CONCURRENTLY ON %s (%s)",
					table, columns, table, strings.Join(columns, ", "))
			}
		})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The schema has foreign keys; finding none means the query is broken.
	if keys == 0 {
		t.Fatal("found no foreign key in the parley schema")
	}
}

package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// TestUUIDCodec: on a connection prepared as the store's pool prepares it,
// google/uuid values go to the server as uuids and come back equal, as
// values, pointers and NULLs, in both the binary and the text formats; a
// NULL scanned into a uuid.UUID leaves it as it was, as uuid's own
// sql.Scanner (which pgx calls without the codec) does.
func TestUUIDCodec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := store.PrepareConn(ctx, conn); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		var text string
		var back uuid.UUID
		var ptr, null *uuid.UUID
		if err := conn.QueryRow(ctx, "SELECT $1::uuid::text, $1::uuid, $2::uuid, NULL::uuid", mode, id, &id).Scan(&text, &back, &ptr, &null); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if text != id.String() || back != id || ptr == nil || *ptr != id || null != nil {
			t.Errorf("mode %v: sent %s, got text %q, value %s, pointer %v, null %v", mode, id, text, back, ptr, null)
		}
		var nilPtr *uuid.UUID
		var isNull bool
		if err := conn.QueryRow(ctx, "SELECT $1::uuid IS NULL", mode, nilPtr).Scan(&isNull); err != nil || !isNull {
			t.Errorf("mode %v: a nil *uuid.UUID: null %v, %v", mode, isNull, err)
		}
		kept := id
		if err := conn.QueryRow(ctx, "SELECT NULL::uuid", mode).Scan(&kept); err != nil || kept != id {
			t.Errorf("mode %v: NULL scanned into a uuid.UUID: %s, %v; want it unchanged", mode, kept, err)
		}
		var ids []uuid.UUID
		if err := conn.QueryRow(ctx, "SELECT ARRAY[$1::uuid, $2::uuid]", mode, id, uuid.Nil).Scan(&ids); err != nil || len(ids) != 2 || ids[0] != id || ids[1] != uuid.Nil {
			t.Errorf("mode %v: uuid[]: %v, %v", mode, ids, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::uuid[]) u WHERE u = $2", mode, []uuid.UUID{id, uuid.New(), id}, id).Scan(&n); err != nil || n != 2 {
			t.Errorf("mode %v: a []uuid.UUID parameter: %d matches, %v; want 2", mode, n, err)
		}
	}
	// The binary format is used: the extended protocol's result is 16 bytes.
	rows, err := conn.Query(ctx, "SELECT $1::uuid", id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	if fd := rows.FieldDescriptions()[0]; fd.Format != pgx.BinaryFormatCode || len(rows.RawValues()[0]) != 16 {
		t.Errorf("result format %d, %d bytes; want binary, 16", fd.Format, len(rows.RawValues()[0]))
	}
}

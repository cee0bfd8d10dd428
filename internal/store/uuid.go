package store

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgx does not know google/uuid's UUID. It would send one through its
// driver.Valuer (formatting 36 characters for the server to parse) and
// scan one through its sql.Scanner (decoding the 16 bytes to a string and
// parsing that). Every statement passes and reads ids, so registerUUID
// gives a connection's type map a uuid codec that copies the 16 bytes of
// the binary format both ways; everything else (the text format, other Go
// types, NULL) goes as before.

// registerUUID replaces m's uuid and uuid[] types with ones whose codec
// knows uuid.UUID.
func registerUUID(m *pgtype.Map) {
	t := &pgtype.Type{Name: "uuid", OID: pgtype.UUIDOID, Codec: uuidCodec{}}
	m.RegisterType(t)
	m.RegisterType(&pgtype.Type{Name: "_uuid", OID: pgtype.UUIDArrayOID, Codec: &pgtype.ArrayCodec{ElementType: t}})
	// Where the parameter's type is not known (the simple protocol), the
	// Go type names it: without this a []uuid.UUID cannot be sent at all.
	m.RegisterDefaultPgType(uuid.UUID{}, "uuid")
	m.RegisterDefaultPgType([]uuid.UUID(nil), "_uuid")
}

// uuidCodec is pgtype.UUIDCodec with binary plans for uuid.UUID.
type uuidCodec struct{ pgtype.UUIDCodec }

func (c uuidCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(uuid.UUID); ok && format == pgtype.BinaryFormatCode {
		return encodeUUID{}
	}
	return c.UUIDCodec.PlanEncode(m, oid, format, value)
}

func (c uuidCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*uuid.UUID); ok && format == pgtype.BinaryFormatCode {
		return scanUUID{}
	}
	return c.UUIDCodec.PlanScan(m, oid, format, target)
}

type encodeUUID struct{}

func (encodeUUID) Encode(value any, buf []byte) ([]byte, error) {
	u := value.(uuid.UUID)
	return append(buf, u[:]...), nil
}

type scanUUID struct{}

func (scanUUID) Scan(src []byte, target any) error {
	u := target.(*uuid.UUID)
	if src == nil {
		// As uuid.UUID's sql.Scanner, which pgx would otherwise call:
		// NULL leaves the value as it is.
		return u.Scan(nil)
	}
	if len(src) != len(u) {
		return fmt.Errorf("invalid length for uuid: %d", len(src))
	}
	copy(u[:], src)
	return nil
}

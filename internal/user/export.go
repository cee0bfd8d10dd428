package user

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// ExportChunkBytes is the size of every chunk of an export but the last.
const ExportChunkBytes = 64 << 10

// ExportStore reads everything a user owns.
type ExportStore interface {
	// ExportUser returns userID's data as one JSON document, read in one
	// snapshot; the same data gives the same bytes.
	ExportUser(ctx context.Context, userID uuid.UUID) ([]byte, error)
}

// Chunk is a piece of an export: Data is the document's bytes from Offset.
type Chunk struct {
	Offset     int64
	Data       []byte
	TotalBytes int64
	// Digest names the document (SHA-256, hex), so a resumed export can
	// tell that the data has not changed since.
	Digest string
}

// Export sends the caller's data to send in chunks, from offset. A resumed
// export (offset > 0) passes the digest its first chunks carried; when the
// data changed since, it returns apperr Aborted, and the export must start
// again from 0. It returns Invalid for an offset past the end.
func (s *Service) Export(ctx context.Context, userID uuid.UUID, offset int64, digest string, send func(Chunk) error) error {
	doc, err := s.store.ExportUser(ctx, userID)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(doc)
	current := hex.EncodeToString(sum[:])
	if digest != "" && digest != current {
		return apperr.New(apperr.Aborted, "your data changed since this export started: export again from offset 0")
	}
	total := int64(len(doc))
	if offset < 0 || offset > total {
		return apperr.InvalidField("offset", "must be between 0 and the export's total_bytes (%d), got %d", total, offset)
	}
	for {
		end := min(offset+ExportChunkBytes, total)
		if err := send(Chunk{Offset: offset, Data: doc[offset:end], TotalBytes: total, Digest: current}); err != nil {
			return err
		}
		if end == total {
			return nil
		}
		offset = end
	}
}

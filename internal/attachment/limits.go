package attachment

// Ceilings no configuration may raise: the request size limit of
// SendMessage and EditMessage (internal/server) is computed from
// MaxRequestBytes, and the database refuses content over 16 MiB.
const (
	// MaxRequestBytes is the most attachment content one message may carry.
	MaxRequestBytes = 7 << 20
	// MaxCountCeiling is the most attachments one message may carry.
	MaxCountCeiling = 16
	// MaxNameBytes bounds a file name.
	MaxNameBytes = 255
)

// Limits are the caps a deployment sets (configuration, documented in the
// README); DefaultLimits are its defaults.
type Limits struct {
	// MaxCount is the most attachments on one message.
	MaxCount int
	// MaxImageBytes and MaxTextBytes cap one file of each kind.
	MaxImageBytes int
	MaxTextBytes  int
	// MaxTotalBytes caps all of one message's attachments together.
	MaxTotalBytes int
	// MaxImageSide caps an image's width and height, MaxImagePixels their
	// product, both read from the header before anything is decoded (of a
	// GIF, its logical screen; only its first frame is decoded).
	MaxImageSide   int
	MaxImagePixels int
}

// DefaultLimits are the caps when configuration sets none: a few photos
// (16 megapixels decode to 64 MB, the most one check may allocate) and a
// few files of source code.
func DefaultLimits() Limits {
	return Limits{
		MaxCount:       4,
		MaxImageBytes:  5 << 20,
		MaxTextBytes:   256 << 10,
		MaxTotalBytes:  MaxRequestBytes,
		MaxImageSide:   8192,
		MaxImagePixels: 16_000_000,
	}
}

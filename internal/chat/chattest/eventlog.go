package chattest

import (
	"time"

	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/chat"
)

// NewEventLog returns an in-memory chat.EventLog whose finished logs are
// kept for retention. Two generators given the same log act as two
// instances of one deployment. It is the broker's in-process log, which
// the broker's tests hold to the same behaviour as Redis.
func NewEventLog(retention time.Duration) chat.EventLog {
	return broker.NewChatLog(broker.NewMemory(retention))
}

package feed

import (
	"errors"

	"github.com/roomfeed/roomfeed"
)

// ErrUnavailable reports that the log's backing service (Redis) could not
// be reached; the caller may retry.
var ErrUnavailable = errors.New("feed unavailable")

// Sink is where a log delivers the events of the rooms this node follows,
// and presence its announcements: the delivery engine's hub (sse.Hub).
type Sink interface {
	// Deliver queues ev for the room's local subscribers; it never blocks.
	// An event of Seq 0 is ephemeral: delivered live, never replayed.
	Deliver(ev roomfeed.Event)
	// HasRoom reports whether room has subscribers on this node.
	HasRoom(room string) bool
	// Rooms returns the rooms that have subscribers on this node.
	Rooms() []string
	// RoomsChanged receives a value whenever the set of rooms changes.
	RoomsChanged() <-chan struct{}
}

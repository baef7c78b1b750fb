package feed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/roomfeed/roomfeed"
)

// signalData is the JSON of a signal, the SSE data its subscribers get.
type signalData struct {
	Room   string          `json:"room"`
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data"`
	Person string          `json:"person"`
	At     string          `json:"at"`
}

// SignalEvent returns the signal name (a roomfeed.MessageName) with data,
// valid JSON, sent to room by person ("" when anonymous) at the given time:
// an ephemeral event (Seq 0) that a log delivers at once to the room's
// current subscribers on every node and never records, replays or numbers.
// Its data is {"room","type","data","person","at"}, with data compacted and
// otherwise byte for byte (no HTML escaping).
func SignalEvent(room, name, person string, data json.RawMessage, at time.Time) (roomfeed.Event, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(signalData{Room: room, Type: name, Data: data, Person: person, At: at.UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return roomfeed.Event{}, fmt.Errorf("signal %s in %s: %w", name, room, err)
	}
	return roomfeed.Event{Room: room, Type: name, Data: bytes.TrimSuffix(b.Bytes(), []byte("\n")), At: at}, nil
}

// ParseSignalEvent returns the event whose data is data, as made by
// SignalEvent; false when data does not name a valid room and a custom
// event name (roomfeed.MessageName), so nothing read from outside can pose
// as one of the feed's own events.
func ParseSignalEvent(data []byte) (roomfeed.Event, bool) {
	ev, ok := parseEphemeral(data)
	if !ok || !roomfeed.ValidName(ev.Room) || !roomfeed.MessageName(ev.Type) {
		return roomfeed.Event{}, false
	}
	return ev, true
}

// parseEphemeral returns the ephemeral event whose data is data, with the
// room and type its data names; false when data is not a JSON object naming
// a room.
func parseEphemeral(data []byte) (roomfeed.Event, bool) {
	var d struct {
		Room string `json:"room"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &d); err != nil || d.Room == "" {
		return roomfeed.Event{}, false
	}
	return roomfeed.Event{Room: d.Room, Type: d.Type, Data: data}, true
}

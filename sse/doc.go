// Package sse owns roomfeed's delivery engine and its wire format. An
// Engine serves each subscriber's Server-Sent Events stream: it subscribes
// on the node's Hub, replays the events after the client's cursors from a
// Source through the catch-up gate, then writes live events, heartbeats and
// the stream's end, on pump workers (hijacked HTTP/1.1) or the request's
// goroutine. Filters select what a stream sends; Engine.Page reads the same
// history as pages. The wire format is here too: framing, the one decoder,
// single and composite cursors, and filters' query parameters.
package sse

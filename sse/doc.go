// Package sse is roomfeed's delivery engine. An Engine serves each
// subscriber's Server-Sent Events stream: it subscribes on the node's Hub,
// replays the events after the client's cursors from a Source (the event
// log), then writes live events, heartbeats and the stream's end. Every
// read of the Source a stream makes goes through the catch-up gate, which
// shares reads between streams, bounds how many run at once, and admits a
// bounded number of streams to catch up (a reconnect storm). Plain
// HTTP/1.1 streams are taken over and written by a few pump workers; the
// others by their request's goroutine, with the same steps. A Filter
// selects the events a stream sends without changing its ids; Engine.Page
// reads the same history as pages, for clients that do not stream. The
// package also owns the wire format: framing, the one decoder, single and
// composite cursors, filters' query parameters.
package sse

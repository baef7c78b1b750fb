// Package feed owns the change feed once a change is committed: the Event
// type, Server-Sent Events framing, the per-node fan-out Hub with bounded
// per-subscriber buffers, and the logs that carry events between nodes and
// replay them: RedisLog (Redis Streams, for several nodes) and MemLog (one
// process, replaying from the SQL history).
//
// feed never imports the SQL store: the durable history is reached through
// the small History interface, which the caller adapts.
package feed

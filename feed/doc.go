// Package feed owns the contract of the logs that carry committed events
// between nodes and replay them (Sink, ErrUnavailable), MemLog, the log of
// the embedded default (one process, replaying from the SQL history),
// presence counted on one node (LocalPresence, MemPresence), and the
// ephemeral events every log carries live, never recorded: presence's and
// signals (SignalEvent). The Redis log and presence are in feed/redis.
//
// feed never imports the SQL store: the durable history is reached through
// roomfeed.History, which the store implements and the caller passes in.
package feed

// Package redis carries committed events between nodes through Redis
// Streams, on a single Redis or a Redis Cluster: the Log (publish, the hot
// replay window, Follow), its readers that deliver the followed rooms to
// the node's sink, the relay that republishes what the streams lack,
// signals over pub/sub, and presence across nodes. It implements the
// contract of package feed.
package redis

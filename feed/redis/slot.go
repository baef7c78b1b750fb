package redis

import (
	"context"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// keySlot returns the hash slot of key as a Redis Cluster computes it: the
// CRC16 (XMODEM) of the key, or of its hash tag (the part between the first
// "{" and the next "}" when that part is not empty), modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

// pauseOf returns the publish pause of room's stream: one per hash slot on
// a Redis Cluster, so that a failing shard pauses only its own rooms; one
// for all rooms on a single Redis.
func (l *Log) pauseOf(room string) *pause {
	if len(l.pauses) == 1 {
		return &l.pauses[0]
	}
	return &l.pauses[keySlot(l.streamKey(room))]
}

// reloadSlots asks a Cluster client to reload its slot map (at most one
// reload runs at a time; go-redis otherwise reloads only on MOVED or every
// minute), so that a replica promoted after its master failed is used at
// once. It does nothing on a single Redis.
func (l *Log) reloadSlots(ctx context.Context) {
	if cc, ok := l.client.(*goredis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}

// perShard calls run with the indices of rooms, grouped by the Cluster
// master that serves each room's stream, one call per master at the same
// time, and returns when they all have. A go-redis Cluster pipeline that
// spans masters ends as its slowest master does, and when its context ends
// while it retries a dead master it fails every command, those other
// masters answered included; one pipeline per master keeps a failing shard
// to its own rooms. On a single Redis run is called once with every index.
func (l *Log) perShard(ctx context.Context, rooms []string, run func(idx []int)) {
	if _, ok := l.client.(*goredis.ClusterClient); !ok || len(rooms) < 2 {
		run(seqIndices(len(rooms)))
		return
	}
	groups := make(map[string][]int)
	for i, room := range rooms {
		shard := l.shardOf(ctx, room)
		groups[shard] = append(groups[shard], i)
	}
	if len(groups) == 1 {
		run(seqIndices(len(rooms)))
		return
	}
	var wg sync.WaitGroup
	for _, idx := range groups {
		wg.Go(func() { run(idx) })
	}
	wg.Wait()
}

// shardOf returns the address of the Cluster master that serves room's
// stream, as the client's slot map has it; "" on a single Redis, or when the
// master is unknown (the commands sent there fail by themselves).
func (l *Log) shardOf(ctx context.Context, room string) string {
	cc, ok := l.client.(*goredis.ClusterClient)
	if !ok {
		return ""
	}
	m, err := cc.MasterForKey(ctx, l.streamKey(room))
	if err != nil {
		return ""
	}
	return m.Options().Addr
}

func seqIndices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

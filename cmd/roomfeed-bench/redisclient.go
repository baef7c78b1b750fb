package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/redisurl"
)

// newRedis returns a client of raw, read as roomfeed reads REDIS_URL
// (internal/redisurl): a Cluster client or a single-node one.
func newRedis(raw string) (redis.UniversalClient, error) {
	o, err := redisurl.Parse(raw)
	if err != nil {
		return nil, err
	}
	return o.Client(), nil
}

// forEachRedisNode calls fn with every node of rc: itself, or every master
// and replica of a Cluster (masters only when mastersOnly).
func forEachRedisNode(ctx context.Context, rc redis.UniversalClient, mastersOnly bool, fn func(context.Context, *redis.Client) error) error {
	switch c := rc.(type) {
	case *redis.Client:
		return fn(ctx, c)
	case *redis.ClusterClient:
		if mastersOnly {
			return c.ForEachMaster(ctx, fn)
		}
		return c.ForEachShard(ctx, fn)
	}
	return fmt.Errorf("redis client %T", rc)
}

// deleteRedisPrefix deletes every key of rc that starts with prefix, one
// UNLINK per key (a Cluster node refuses several keys of different slots).
func deleteRedisPrefix(ctx context.Context, rc redis.UniversalClient, prefix string) error {
	return forEachRedisNode(ctx, rc, true, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		pipe := c.Pipeline()
		for iter.Next(ctx) {
			pipe.Unlink(ctx, iter.Val())
			if pipe.Len() == 500 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return iter.Err()
	})
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// newRedis returns a client of raw, read as roomfeed reads REDIS_URL: a
// Cluster client when it names several hosts (redis://h1:7000,h2:7001) or
// has the scheme redis-cluster:// (rediss-cluster://), a single-node client
// otherwise.
func newRedis(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	scheme, cluster := u.Scheme, false
	switch u.Scheme {
	case "redis", "rediss":
	case "redis-cluster", "rediss-cluster":
		scheme, cluster = strings.TrimSuffix(u.Scheme, "-cluster"), true
	default:
		return nil, errors.New("redis URL must start with redis://, rediss://, redis-cluster:// or rediss-cluster://")
	}
	hosts := strings.Split(u.Host, ",")
	if !cluster && len(hosts) == 1 {
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return redis.NewClient(opts), nil
	}
	seed := *u
	seed.Scheme, seed.Host, seed.Path = scheme, hosts[0], ""
	q := seed.Query()
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	seed.RawQuery = q.Encode()
	opts, err := redis.ParseClusterURL(seed.String())
	if err != nil {
		return nil, err
	}
	return redis.NewClusterClient(opts), nil
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

// Package redisurl reads a Redis URL the way roomfeed's REDIS_URL is read,
// for the service and for the tools that talk to the same Redis.
package redisurl

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Options is a parsed Redis URL: exactly one of Single and Cluster is set.
type Options struct {
	Single  *redis.Options
	Cluster *redis.ClusterOptions
}

// Parse reads raw: a Cluster when it names several hosts
// (redis://h1:7000,h2:7001) or has the scheme redis-cluster://
// (rediss-cluster:// for TLS; more seed nodes also as ?addr=host:port), a
// single node otherwise. The query options are go-redis's (redis.ParseURL,
// redis.ParseClusterURL).
func Parse(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Options{}, err
	}
	scheme, cluster := u.Scheme, false
	switch u.Scheme {
	case "redis", "rediss":
	case "redis-cluster", "rediss-cluster":
		scheme, cluster = strings.TrimSuffix(u.Scheme, "-cluster"), true
	default:
		return Options{}, errors.New("the URL must start with redis://, rediss://, redis-cluster:// or rediss-cluster://")
	}
	hosts := strings.Split(u.Host, ",")
	if !cluster && len(hosts) == 1 {
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return Options{}, err
		}
		return Options{Single: opts}, nil
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return Options{}, errors.New("a Redis Cluster has only database 0, not " + strconv.Quote(p))
	}
	if slices.Contains(hosts, "") {
		return Options{}, errors.New("empty host in the list of cluster nodes")
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
		return Options{}, err
	}
	return Options{Cluster: opts}, nil
}

// Client returns the client of o.
func (o Options) Client() redis.UniversalClient {
	if o.Cluster != nil {
		return redis.NewClusterClient(o.Cluster)
	}
	return redis.NewClient(o.Single)
}

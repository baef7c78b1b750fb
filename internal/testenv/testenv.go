// Package testenv gives tests isolated access to the real PostgreSQL and Redis
// services: every call makes its own PostgreSQL schema or Redis key prefix and
// removes it when the test ends, so tests never touch data they did not create.
//
// The services are found through ROOMFEED_TEST_POSTGRES_URL and
// ROOMFEED_TEST_REDIS_URL (defaults: the local services on their standard
// ports). When a service cannot be reached the test fails if CI or
// ROOMFEED_TEST_REQUIRE_SERVICES is set, and otherwise is skipped with a loud
// message naming scripts/test-services.sh.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/redis/go-redis/v9"
)

const (
	defaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultRedis    = "redis://127.0.0.1:6379/0"
)

// UniqueName returns prefix followed by a random lower-case suffix, usable as
// a schema name, a key prefix or a room name.
func UniqueName(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + hex.EncodeToString(b[:])
}

func required() bool {
	return os.Getenv("CI") != "" || os.Getenv("ROOMFEED_TEST_REQUIRE_SERVICES") != ""
}

func unavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	Missing(tb, fmt.Sprintf("%s is not reachable (%v); run scripts/test-services.sh or `make test`, which start it", what, err))
}

// Missing ends a test that lacks something the machine should have (a
// service, a program), saying what in msg: it fails under CI (or with
// ROOMFEED_TEST_REQUIRE_SERVICES set), and is skipped loudly elsewhere.
func Missing(tb testing.TB, msg string) {
	tb.Helper()
	if required() {
		tb.Fatal(msg)
	}
	tb.Skip("SKIPPED LOUDLY: " + msg)
}

// PostgresURL returns a connection URL whose search_path is a new, empty
// schema. The schema is dropped when the test ends.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("ROOMFEED_TEST_POSTGRES_URL")
	if base == "" {
		base = defaultPostgres
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		unavailable(tb, "PostgreSQL at "+redact(base), err)
	}
	schema := UniqueName("rf_test_")
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parse %s: %v", redact(base), err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// RedisURL returns the URL of the test Redis, failing or skipping the test
// when it is not reachable.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("ROOMFEED_TEST_REDIS_URL")
	if u == "" {
		u = defaultRedis
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		tb.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(tb, "Redis at "+u, err)
	}
	return u
}

// Redis returns a client for the test Redis and a key prefix unique to this
// test. Every key under the prefix is deleted when the test ends, and the
// client is closed.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	opts, err := redis.ParseURL(RedisURL(tb))
	if err != nil {
		tb.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opts)
	prefix := UniqueName("rftest:") + ":"
	tb.Cleanup(func() {
		defer c.Close()
		CleanRedis(tb, c, prefix)
	})
	return c, prefix
}

// CleanRedis deletes every key that starts with prefix.
func CleanRedis(tb testing.TB, c redis.UniversalClient, prefix string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 500).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			tb.Errorf("delete %s: %v", iter.Val(), err)
		}
	}
	if err := iter.Err(); err != nil {
		tb.Errorf("scan %s*: %v", prefix, err)
	}
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

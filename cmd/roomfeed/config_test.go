package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			if c.Addr != "127.0.0.1:8080" || c.DatabaseURL != "sqlite://data/roomfeed.db" || c.RedisURL != "" {
				t.Errorf("got %+v, want the embedded default on 127.0.0.1:8080", c)
			}
			if c.Heartbeat != 15*time.Second || c.MaxDataBytes != 64<<10 || c.DBTimeout != 5*time.Second {
				t.Errorf("got heartbeat %v, data %d, db timeout %v; want 15s, 65536, 5s", c.Heartbeat, c.MaxDataBytes, c.DBTimeout)
			}
			if c.IdempotencyTTL != 24*time.Hour || c.VersionsKeep != 100 {
				t.Errorf("got idempotency TTL %v, versions kept %d; want 24h, 100", c.IdempotencyTTL, c.VersionsKeep)
			}
		}},
		{name: "idempotency and versions", env: map[string]string{"ROOMFEED_IDEMPOTENCY_TTL": "2h"}, args: []string{"--versions-keep", "7"},
			check: func(t *testing.T, c config) {
				if c.IdempotencyTTL != 2*time.Hour || c.VersionsKeep != 7 {
					t.Errorf("got idempotency TTL %v, versions kept %d; want 2h, 7", c.IdempotencyTTL, c.VersionsKeep)
				}
			}},
		{name: "idempotency TTL too short", env: map[string]string{"ROOMFEED_IDEMPOTENCY_TTL": "10ms"}, wantErr: "ROOMFEED_IDEMPOTENCY_TTL"},
		{name: "no versions kept", args: []string{"--versions-keep", "0"}, wantErr: "ROOMFEED_VERSIONS_KEEP"},
		{name: "environment", env: map[string]string{"ROOMFEED_ADDR": ":9", "ROOMFEED_JWT_SECRET": strings.Repeat("s", 32), "REDIS_URL": "redis://r:1/0", "ROOMFEED_HEARTBEAT": "2s",
			"ROOMFEED_CORS_ORIGINS": "https://a.example, http://b.example:8080/"},
			check: func(t *testing.T, c config) {
				if c.Addr != ":9" || c.RedisURL != "redis://r:1/0" || c.Heartbeat != 2*time.Second {
					t.Errorf("got %+v", c)
				}
				if got := strings.Join(c.CORSOrigins, " "); got != "https://a.example http://b.example:8080" {
					t.Errorf("cors: got %q", got)
				}
			}},
		{name: "flag beats environment", args: []string{"--addr", "127.0.0.1:1"}, env: map[string]string{"ROOMFEED_ADDR": ":9"},
			check: func(t *testing.T, c config) {
				if c.Addr != "127.0.0.1:1" {
					t.Errorf("got addr %s, want the flag's", c.Addr)
				}
			}},
		{name: "bad database scheme", env: map[string]string{"DATABASE_URL": "mysql://x"}, wantErr: "DATABASE_URL"},
		{name: "bad redis scheme", args: []string{"--redis-url", "http://x"}, wantErr: "REDIS_URL"},
		{name: "wildcard CORS", env: map[string]string{"ROOMFEED_CORS_ORIGINS": "*"}, wantErr: "not allowed"},
		{name: "CORS with a path", env: map[string]string{"ROOMFEED_CORS_ORIGINS": "https://a.example/app"}, wantErr: "ROOMFEED_CORS_ORIGINS"},
		{name: "stream pace", env: map[string]string{"ROOMFEED_STREAM_PACE": "40ms"}, check: func(t *testing.T, c config) {
			if c.StreamPace != 40*time.Millisecond {
				t.Errorf("got stream pace %v, want 40ms", c.StreamPace)
			}
		}},
		{name: "stream pace off by default", check: func(t *testing.T, c config) {
			if c.StreamPace != 0 {
				t.Errorf("got stream pace %v, want 0 (never)", c.StreamPace)
			}
		}},
		{name: "negative stream pace", args: []string{"--stream-pace", "-1ms"}, wantErr: "ROOMFEED_STREAM_PACE"},
		{name: "stream pace too long", env: map[string]string{"ROOMFEED_STREAM_PACE": "2s"}, wantErr: "ROOMFEED_STREAM_PACE"},
		{name: "debug address", env: map[string]string{"ROOMFEED_DEBUG_ADDR": "127.0.0.1:6060"}, check: func(t *testing.T, c config) {
			if c.DebugAddr != "127.0.0.1:6060" {
				t.Errorf("got debug addr %q, want 127.0.0.1:6060", c.DebugAddr)
			}
		}},
		{name: "debug off by default", check: func(t *testing.T, c config) {
			if c.DebugAddr != "" {
				t.Errorf("got debug addr %q, want none", c.DebugAddr)
			}
		}},
		{name: "debug on every interface", args: []string{"--debug-addr", ":6060"}, wantErr: "ROOMFEED_DEBUG_ADDR"},
		{name: "debug on a public address", args: []string{"--debug-addr", "10.1.2.3:6060"}, wantErr: "ROOMFEED_DEBUG_ADDR"},
		{name: "debug on the listen address", args: []string{"--addr", "127.0.0.1:8080", "--debug-addr", "127.0.0.1:8080"}, wantErr: "ROOMFEED_DEBUG_ADDR"},
		{name: "bad duration", env: map[string]string{"ROOMFEED_HEARTBEAT": "soon"}, wantErr: "ROOMFEED_HEARTBEAT"},
		{name: "database timeout too short", env: map[string]string{"ROOMFEED_DB_TIMEOUT": "10ms"}, wantErr: "ROOMFEED_DB_TIMEOUT"},
		{name: "database timeout", args: []string{"--db-timeout", "2s"}, check: func(t *testing.T, c config) {
			if c.DBTimeout != 2*time.Second {
				t.Errorf("got db timeout %v, want 2s", c.DBTimeout)
			}
		}},
		{name: "signal rate", args: []string{"--signal-burst", "5"}, env: map[string]string{"ROOMFEED_SIGNAL_RATE": "3"}, check: func(t *testing.T, c config) {
			if c.Limits.SignalRate != 3 || c.Limits.SignalBurst != 5 {
				t.Errorf("got signal rate %v, burst %d; want 3, 5", c.Limits.SignalRate, c.Limits.SignalBurst)
			}
		}},
		{name: "signal rate defaults", check: func(t *testing.T, c config) {
			if c.Limits.SignalRate != 10 || c.Limits.SignalBurst != 20 {
				t.Errorf("got signal rate %v, burst %d; want 10, 20", c.Limits.SignalRate, c.Limits.SignalBurst)
			}
		}},
		{name: "signal rate zero", env: map[string]string{"ROOMFEED_SIGNAL_RATE": "0"}, wantErr: "ROOMFEED_SIGNAL_RATE"},
		{name: "bad number", env: map[string]string{"ROOMFEED_MAX_BODY_BYTES": "lots"}, wantErr: "ROOMFEED_MAX_BODY_BYTES"},
		{name: "data above body", args: []string{"--max-body-bytes", "2048", "--max-data-bytes", "4096"}, wantErr: "MAX_DATA_BYTES"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "usage"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			c, err := parseConfig(tt.args, getenv, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			tt.check(t, c)
		})
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("postgres://u:secret@h/db"); strings.Contains(got, "secret") {
		t.Errorf("got %s, want the password redacted", got)
	}
}

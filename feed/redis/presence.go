package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/feed"
)

// DefaultPresenceTTL is the default of PresenceOptions.TTL.
const DefaultPresenceTTL = 30 * time.Second

// PresenceOptions configures presence across nodes. The zero value gives
// the defaults.
type PresenceOptions struct {
	Prefix string        // key prefix, as for Log; default DefaultPrefix
	Grace  time.Duration // quick-reconnect grace, default feed.DefaultPresenceGrace
	TTL    time.Duration // a crashed node's people leave within about this, default DefaultPresenceTTL
	Node   string        // this node's id, default random
	Logger *slog.Logger  // nil discards the messages
}

// Presence is presence across nodes. Each room has a sorted set
// <prefix>{<room>}:presence whose members are "<node>|<person>" scored by
// their expiry (Unix ms); every node refreshes its members at a third of the
// TTL, so a crashed node's members expire. Joins and leaves are announced on
// the channel <prefix>presence, which every node relays to its subscribers.
// The checks "is anyone else holding this person?" run in Lua, so one join
// or leave is announced once whichever nodes race.
type Presence struct {
	client goredis.UniversalClient
	sink   feed.Sink
	opts   PresenceOptions
	local  *feed.LocalPresence
	log    *slog.Logger
}

// NewPresence returns presence over client; Run must be running for
// refreshes, expiry and delivery of other nodes' announcements.
func NewPresence(client goredis.UniversalClient, sink feed.Sink, opts PresenceOptions) *Presence {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultPresenceTTL
	}
	if opts.Node == "" {
		opts.Node = randomID()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Presence{client: client, sink: sink, opts: opts, log: opts.Logger}
	p.local = feed.NewLocalPresence(opts.Grace, p.announceJoin, p.announceLeave)
	return p
}

func (p *Presence) key(room string) string { return p.opts.Prefix + "{" + room + "}:presence" }
func (p *Presence) channel() string        { return p.opts.Prefix + "presence" }
func (p *Presence) member(person string) string {
	return p.opts.Node + "|" + person
}

// presenceScript adds or removes a member and announces the person's join
// or leave when no other live member holds them.
// KEYS[1] the set; ARGV: op ("join", "leave" or "expire"), member, person,
// now (ms), expiry (ms), channel, payload.
var presenceScript = goredis.NewScript(`
local op, member, person, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local suffix = '|' .. person
local function others()
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
    if m ~= member and string.sub(m, -#suffix) == suffix then return true end
  end
  return false
end
if op == 'join' then
  local had = others()
  redis.call('ZADD', KEYS[1], ARGV[5], member)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) - now + 60000)
  if not had then redis.call('PUBLISH', ARGV[6], ARGV[7]) return 1 end
  return 0
end
if op == 'expire' then
  local score = redis.call('ZSCORE', KEYS[1], member)
  if not score or tonumber(score) >= now then return 0 end
end
if redis.call('ZREM', KEYS[1], member) == 1 and not others() then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
  return 1
end
return 0
`)

func (p *Presence) run(ctx context.Context, op, room, member, person, typ string) error {
	now := time.Now()
	payload := []byte(feed.PresenceEvent(room, person, typ).Data)
	return presenceScript.Run(ctx, p.client, []string{p.key(room)}, op, member, person,
		now.UnixMilli(), now.Add(p.opts.TTL).UnixMilli(), p.channel(), payload).Err()
}

func (p *Presence) announceJoin(room, person string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.run(ctx, "join", room, p.member(person), person, feed.PresenceJoined); err != nil {
		p.log.LogAttrs(ctx, slog.LevelWarn, "presence join", slog.String("room", room), slog.Any("error", err))
	}
}

func (p *Presence) announceLeave(room, person string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.run(ctx, "leave", room, p.member(person), person, feed.PresenceLeft); err != nil {
		p.log.LogAttrs(ctx, slog.LevelWarn, "presence leave", slog.String("room", room), slog.Any("error", err))
	}
}

// Join records a connection of person to room until leave is called.
func (p *Presence) Join(_ context.Context, room, person string) (leave func(), err error) {
	return p.local.Join(room, person), nil
}

// List returns who is in room now, on every node.
func (p *Presence) List(ctx context.Context, room string) ([]string, error) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	members, err := p.client.ZRangeByScore(ctx, p.key(room), &goredis.ZRangeBy{Min: now, Max: "+inf"}).Result()
	if err != nil {
		if unreachable(err) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", feed.ErrUnavailable, err) // 503, not 500
		}
		return nil, fmt.Errorf("presence of %s: %w", room, err)
	}
	var out []string
	for _, m := range members {
		if _, person, ok := strings.Cut(m, "|"); ok && !slices.Contains(out, person) {
			out = append(out, person)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Run relays other nodes' announcements to local subscribers, refreshes
// this node's members and expires those of crashed nodes, until ctx is
// done. Its members are left to expire: people of a node that stops come
// back on another node within the TTL without flapping.
func (p *Presence) Run(ctx context.Context) error {
	defer p.local.Close()
	tick := time.NewTicker(p.opts.TTL / 3)
	defer tick.Stop()
	return relayChannel(ctx, p.client, p.channel(), p.sink, feed.ParsePresenceEvent, tick.C, func(ctx context.Context) {
		if err := p.heartbeat(ctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.LogAttrs(ctx, slog.LevelWarn, "presence heartbeat", slog.Any("error", err))
		}
	})
}

// heartbeat refreshes this node's members and expires stale ones in the
// rooms this node serves.
func (p *Presence) heartbeat(ctx context.Context) error {
	expiry := float64(time.Now().Add(p.opts.TTL).UnixMilli())
	held := p.local.Held()
	if len(held) > 0 {
		_, err := p.client.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
			for _, k := range held {
				pipe.ZAddXX(ctx, p.key(k.Room), goredis.Z{Score: expiry, Member: p.member(k.Person)})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for _, room := range p.sink.Rooms() {
		stale, err := p.client.ZRangeByScore(ctx, p.key(room), &goredis.ZRangeBy{Min: "-inf", Max: "(" + now}).Result()
		if err != nil {
			return err
		}
		for _, m := range stale {
			_, person, _ := strings.Cut(m, "|")
			if err := p.run(ctx, "expire", room, m, person, feed.PresenceLeft); err != nil {
				return err
			}
		}
	}
	return nil
}

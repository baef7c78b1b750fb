package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
)

// relayChannel delivers to sink the ephemeral events published on channel
// that parse accepts, for the rooms that have subscribers on this node,
// until ctx is done; then it returns nil. It calls onTick at each value of
// tick (a nil tick never fires). It holds one pub/sub connection, which
// go-redis re-establishes by itself after a failure; what is published
// meanwhile is lost (ephemeral events are at most once).
func relayChannel(ctx context.Context, client goredis.UniversalClient, channel string, sink feed.Sink,
	parse func([]byte) (roomfeed.Event, bool), tick <-chan time.Time, onTick func(context.Context)) error {
	sub := client.Subscribe(ctx, channel)
	defer sub.Close()
	msgs := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			if ev, ok := parse([]byte(m.Payload)); ok && sink.HasRoom(ev.Room) {
				sink.Deliver(ev)
			}
		case <-tick:
			onTick(ctx)
		}
	}
}

package redis

import (
	"context"
	"errors"
	"fmt"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
)

// signalChannel is the pub/sub channel that carries signals to every node.
func (l *Log) signalChannel() string { return l.opts.Prefix + "signals" }

// Signal sends ev, an ephemeral event (Seq 0) whose data is a signal's JSON
// as feed.SignalEvent makes it, to the room's current subscribers on every
// node: it is published on the channel Prefix + "signals" (a Redis Cluster
// delivers a PUBLISH to the subscribers of every node) and each node's
// RunSignals hands it to its sink. Nothing is stored: a node whose
// subscription is down at that moment never gets it (at most once). A
// Redis that cannot be reached, or does not answer before ctx's deadline,
// is feed.ErrUnavailable.
func (l *Log) Signal(ctx context.Context, ev roomfeed.Event) error {
	if ev.Room == "" || ev.Seq != 0 {
		return fmt.Errorf("signal %q/%d: not an ephemeral event", ev.Room, ev.Seq)
	}
	if err := l.client.Publish(ctx, l.signalChannel(), []byte(ev.Data)).Err(); err != nil {
		if unreachable(err) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", feed.ErrUnavailable, err)
		}
		return fmt.Errorf("signal %s: %w", ev.Room, err)
	}
	return nil
}

// RunSignals delivers to the sink the signals sent through any node for the
// rooms that have subscribers on this node, until ctx is done; then it
// returns nil. Payloads that are not signals' (feed.ParseSignalEvent) are
// ignored. See relayChannel for the connection.
func (l *Log) RunSignals(ctx context.Context) error {
	return relayChannel(ctx, l.client, l.signalChannel(), l.sink, feed.ParseSignalEvent, nil, nil)
}

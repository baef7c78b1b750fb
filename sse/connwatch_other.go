//go:build !linux

package sse

import (
	"errors"
	"net"
)

// connWatch is Linux-only (epoll). Elsewhere the pump does not run and every
// stream is served by its handler goroutine, which notices a closed
// connection at once.
type connWatch struct{}

func newConnWatch() (*connWatch, error) {
	return nil, errors.New("no connection watcher on this platform")
}

func (w *connWatch) add(net.Conn, func()) (func(), bool) { return nil, false }
func (w *connWatch) run()                                {}
func (w *connWatch) close()                              {}

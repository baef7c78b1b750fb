//go:build linux

package sse

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// connWatch tells the pump when a client closes its connection, without a
// goroutine blocked in a read per connection: one goroutine waits in
// epoll_wait for EPOLLRDHUP (and hang-up or error) on every pumped
// connection, each registered once (EPOLLONESHOT).
type connWatch struct {
	epfd int
	stop int // eventfd; readable = return

	mu     sync.Mutex
	next   uint64
	fns    map[uint64]func()
	closed bool // the descriptors are closed; nothing may use them
}

func newConnWatch() (*connWatch, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, 0)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stop, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(stop)
		return nil, err
	}
	return &connWatch{epfd: epfd, stop: stop, fns: make(map[uint64]func())}, nil
}

// The event's 64-bit user data holds a registration id (0 = stop).
func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add calls fn (once, from the watcher's goroutine; it must not block) when
// the peer of conn closes or resets it. unwatch must be called before conn
// is closed. ok is false when conn cannot be watched.
func (w *connWatch) add(conn net.Conn, fn func()) (unwatch func(), ok bool) {
	sc, isSys := conn.(syscall.Conn)
	if !isSys {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, false
	}
	w.next++
	id := w.next
	var ctlErr error
	err = raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT}
		setEventID(&ev, id)
		ctlErr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if errors.Join(err, ctlErr) != nil {
		return nil, false
	}
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.fns, id)
		if !w.closed {
			_ = raw.Control(func(fd uintptr) {
				_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			})
		}
	}, true
}

// run waits for events until close is called, then closes the descriptors.
func (w *connWatch) run() {
	defer func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.closed = true
		unix.Close(w.epfd)
		unix.Close(w.stop)
	}()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for i := range events[:n] {
			id := eventID(&events[i])
			if id == 0 {
				return
			}
			w.mu.Lock()
			fn := w.fns[id]
			delete(w.fns, id)
			w.mu.Unlock()
			if fn != nil {
				fn()
			}
		}
	}
}

// close makes run return.
func (w *connWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	var one [8]byte
	one[0] = 1 // eventfd counters are host-endian; any non-zero value wakes it
	_, _ = unix.Write(w.stop, one[:])
}

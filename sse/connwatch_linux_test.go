package sse

import (
	"net"
	"testing"
	"time"
)

// TestConnWatch: the watcher calls back once when the peer closes a
// watched connection, never for one unwatched first, and returns at close.
func TestConnWatch(t *testing.T) {
	w, err := newConnWatch()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.run(); close(done) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (server, client net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { server.Close(); client.Close() })
		return server, client
	}

	watched, peer := pair()
	gone := make(chan struct{}, 2)
	if _, ok := w.add(watched, func() { gone <- struct{}{} }); !ok {
		t.Fatal("a TCP connection could not be watched")
	}
	unwatched, peer2 := pair()
	unwatch, ok := w.add(unwatched, func() { t.Error("called back after unwatch") })
	if !ok {
		t.Fatal("a TCP connection could not be watched")
	}
	unwatch()
	peer2.Close()
	peer.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("no callback within 5s of the peer closing")
	}
	time.Sleep(50 * time.Millisecond)
	if len(gone) != 0 {
		t.Error("called back twice")
	}

	w.close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after close")
	}
	if _, ok := w.add(watched, func() {}); ok {
		t.Error("add after close: got ok, want refused")
	}
}

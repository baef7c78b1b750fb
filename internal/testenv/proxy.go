package testenv

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy a test can cut (every connection closed, new ones
// refused at once) or stall (connections stay open and new ones are
// accepted, but no byte goes through: a server that hangs), and restore.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	flowing *sync.Cond // broadcast when stalled or cut changes
	cut     bool
	stalled bool
	drop    bool // answers lost: see SetDropAnswers
	resets  int
	conns   map[net.Conn]struct{}
	bad     BadLink
	wg      sync.WaitGroup
}

// BadLink is what a bad network does to every connection of a Proxy: each
// chunk of bytes is held Latency plus up to Jitter, the bytes go at most
// BytesPerSec (0: no cap) in each direction, and each connection is reset
// (RST) after a random time of mean ResetEvery (0: never).
type BadLink struct {
	Latency, Jitter time.Duration
	BytesPerSec     int
	ResetEvery      time.Duration
}

// SetBadLink makes the links of new connections (and the chunks of open
// ones) bad as b says; the zero BadLink is a good link again.
func (p *Proxy) SetBadLink(b BadLink) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bad = b
}

// Resets returns how many connections the bad link has reset.
func (p *Proxy) Resets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resets
}

// StartProxy listens on a free loopback port and forwards to target until
// the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.flowing = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.SetCut(true)
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Add(2)
		if every := p.bad.ResetEvery; every > 0 {
			after := time.Duration(rand.ExpFloat64() * float64(every))
			time.AfterFunc(after, func() { p.reset(c, up) })
		}
		p.mu.Unlock()
		go p.pipe(up, c, false)
		go p.pipe(c, up, true)
	}
}

// reset closes both sides of a connection with a TCP RST, as a broken
// middlebox does.
func (p *Proxy) reset(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, open := p.conns[conns[0]]; !open {
		return
	}
	p.resets++
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

// delay holds a chunk of n bytes as the bad link says.
func (p *Proxy) delay(n int) {
	p.mu.Lock()
	b := p.bad
	p.mu.Unlock()
	d := b.Latency
	if b.Jitter > 0 {
		d += rand.N(b.Jitter)
	}
	if b.BytesPerSec > 0 {
		d += time.Duration(n) * time.Second / time.Duration(b.BytesPerSec)
	}
	if d > 0 {
		time.Sleep(d)
	}
}

// pipe copies src to dst, holding what it read while the proxy is stalled.
// answers says src is the target: what it sends is lost while answers are
// dropped.
func (p *Proxy) pipe(dst, src net.Conn, answers bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled && !p.cut {
				p.flowing.Wait()
			}
			drop := answers && p.drop
			p.mu.Unlock()
			if drop {
				p.reset(dst, src)
				break
			}
			p.delay(n)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// SetCut cuts (true: close every connection, refuse new ones) or restores.
func (p *Proxy) SetCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
	p.flowing.Broadcast()
}

// SetStall stalls (true: forward nothing, in either direction, on any
// connection, open or new) or lets the held bytes through again.
func (p *Proxy) SetStall(stalled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = stalled
	p.flowing.Broadcast()
}

// SetDropAnswers drops answers (true: the first bytes the target sends on
// any connection reset it instead of going through, so every request gets
// there and its answer is lost, as on a link that dies while the server
// answers) or lets them through again.
func (p *Proxy) SetDropAnswers(drop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = drop
}

// FreeAddr returns a loopback address nothing listens on: where a service
// is down (connections are refused at once), or one will be started.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

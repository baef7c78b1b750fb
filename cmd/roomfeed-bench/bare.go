package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// bareMain is the hidden "bare-sse" subcommand: the smallest net/http SSE
// broadcaster that speaks the benchmark's protocol (PUT answers with
// Event-ID, GET /rooms/{room}/events streams "id:" frames of the same size
// as roomfeed's). No database, no framework: it is the ceiling of this
// machine for the saturation scenario. Like roomfeed it encodes each event
// once, keeps a 1,024-event buffer per subscriber (dropping a full one), and
// writes whatever is queued in one flush.
func bareMain(args []string) error {
	addr := "127.0.0.1:0"
	if len(args) == 2 && args[0] == "--addr" {
		addr = args[1]
	}
	b := &bare{rooms: make(map[string]*bareRoom)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms/{room}/events", b.events)
	mux.HandleFunc("PUT /rooms/{room}/elements/{id}", b.put)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Printf("listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

type bare struct {
	mu    sync.Mutex
	rooms map[string]*bareRoom
}

type bareRoom struct {
	seq  int64
	subs map[chan []byte]struct{}
	vers map[string]int64
}

func (b *bare) room(name string) *bareRoom {
	r := b.rooms[name]
	if r == nil {
		r = &bareRoom{subs: make(map[chan []byte]struct{}), vers: make(map[string]int64)}
		b.rooms[name] = r
	}
	return r
}

func (b *bare) put(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_ = body // the payload below has the shape and size of roomfeed's
	name, id := req.PathValue("room"), req.PathValue("id")
	at := time.Now().UTC().Format(time.RFC3339Nano)
	b.mu.Lock()
	r := b.room(name)
	r.seq++
	r.vers[id]++
	seq, ver := r.seq, r.vers[id]
	typ := "element.updated"
	if ver == 1 {
		typ = "element.created"
	}
	el := `{"id":"` + id + `","kind":"item","version":` + strconv.FormatInt(ver, 10) +
		`,"data":` + elementData[:len(elementData)-1] + `,"n":` + strconv.FormatInt(seq, 10) + `},"updated_at":"` + at + `"}`
	data := `{"id":"` + strconv.FormatInt(seq, 10) + `","room":"` + name + `","type":"` + typ + `","element":` + el + `,"at":"` + at + `"}`
	frame := []byte("id: " + strconv.FormatInt(seq, 10) + "\nevent: " + typ + "\ndata: " + data + "\n\n")
	for ch := range r.subs {
		select {
		case ch <- frame:
		default: // slow: drop it, like roomfeed
			delete(r.subs, ch)
			close(ch)
		}
	}
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Event-ID", strconv.FormatInt(seq, 10))
	w.Header().Set("ETag", `"`+strconv.FormatInt(ver, 10)+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, el)
}

func (b *bare) events(w http.ResponseWriter, req *http.Request) {
	name := req.PathValue("room")
	ch := make(chan []byte, 1024)
	b.mu.Lock()
	r := b.room(name)
	r.subs[ch] = struct{}{}
	from := r.seq
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if _, ok := r.subs[ch]; ok {
			delete(r.subs, ch)
		}
		b.mu.Unlock()
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_, _ = io.WriteString(w, "retry: 2000\n\n: roomfeed "+name+" from "+strconv.FormatInt(from, 10)+"\n\n")
	if rc.Flush() != nil {
		return
	}
	var buf []byte
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				return
			}
			buf = append(buf[:0], f...)
		drain:
			for len(buf) < 64<<10 {
				select {
				case f, ok := <-ch:
					if !ok {
						break drain
					}
					buf = append(buf, f...)
				default:
					break drain
				}
			}
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := w.Write(buf); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		case <-req.Context().Done():
			return
		}
	}
}

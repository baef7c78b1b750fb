package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugServer serves the Go runtime's profiles (net/http/pprof) on
// --debug-addr, a loopback address of its own: they carry no token check,
// so they are never on the API's listener. An operator reaches them with
// `go tool pprof http://ADDR/debug/pprof/profile?seconds=10`, through an SSH
// tunnel from elsewhere.
type debugServer struct {
	srv  *http.Server
	done chan error
}

// listenDebug listens on addr, before the node announces anything, so a
// busy port fails the start; nil when addr is empty (no profiles).
func listenDebug(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listen: %w", err)
	}
	return ln, nil
}

// startDebug serves the profiles on ln until stop; it prints "debug on
// http://ADDR" to stdout. A nil ln starts nothing (nil).
func startDebug(ln net.Listener, stdout io.Writer, logger *slog.Logger) *debugServer {
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and every named profile: heap, goroutine, allocs, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d := &debugServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		done: make(chan error, 1),
	}
	go func() { d.done <- d.srv.Serve(ln) }()
	fmt.Fprintf(stdout, "debug on http://%s\n", ln.Addr())
	logger.LogAttrs(context.Background(), slog.LevelInfo, "debug listening", slog.String("addr", ln.Addr().String()))
	return d
}

// stop closes the listener and every connection (a profile being taken is
// cut short) and waits for the server's goroutine.
func (d *debugServer) stop() {
	if d == nil {
		return
	}
	_ = d.srv.Close()
	<-d.done
}

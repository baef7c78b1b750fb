package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// serve listens, runs the node's background loops and serves HTTP until
// ctx is done (or serving fails), then shuts down in order: end every
// stream at once (clients reconnect elsewhere), stop the HTTP server
// (in-flight writes finish), wait for the publishes of answered writes,
// stop the background loops. The caller then closes the node.
func (n *node) serve(ctx context.Context, stdout io.Writer) error {
	tlsConfig, err := n.cfg.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	debugLn, err := listenDebug(n.cfg.DebugAddr)
	if err != nil {
		ln.Close()
		return err
	}
	httpSrv := &http.Server{
		TLSConfig:         tlsConfig, // nil = plain HTTP
		Handler:           n.api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn),
	}
	stopLoops := n.startLoops(ctx)
	defer stopLoops()
	serveErr := make(chan error, 1)
	go func() { serveErr <- serve(httpSrv, ln, tlsConfig != nil) }()
	fmt.Fprintf(stdout, "listening on %s://%s\n", scheme(tlsConfig), ln.Addr())
	n.logger.LogAttrs(ctx, slog.LevelInfo, "listening", slog.String("addr", ln.Addr().String()))
	debug := startDebug(debugLn, stdout, n.logger)
	defer debug.stop()

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	n.logger.LogAttrs(ctx, slog.LevelInfo, "shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	n.feeds.Close(shutdownCtx)
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		n.logger.LogAttrs(ctx, slog.LevelWarn, "shutdown", slog.Any("error", err))
		_ = httpSrv.Close()
	}
	<-serveErr
	n.api.WaitPublishes(shutdownCtx)
	return nil
}

// startLoops runs the background loops until the returned function is
// called, which stops them and waits for them.
func (n *node) startLoops(ctx context.Context) (stop func()) {
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, loop := range n.loops {
		wg.Go(func() {
			if err := loop(loopCtx); err != nil {
				n.logger.LogAttrs(ctx, slog.LevelError, "background loop stopped", slog.Any("error", err))
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

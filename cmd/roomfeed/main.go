// Command roomfeed serves the roomfeed change feed: HTTP writes of room
// elements, recorded in SQL and fanned out as resumable Server-Sent Events.
// This file only wires the parts together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"
)

func main() {
	gin.SetMode(gin.ReleaseMode) // no route list on stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "roomfeed:", err)
		}
		code := 1
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			code = coded.ExitCode()
		}
		os.Exit(code)
	}
}

// run starts the service (or runs a subcommand) and blocks until ctx is
// cancelled, then shuts down in order (node.serve) and closes the node.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "tail" {
		return runTail(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "history" {
		return runHistory(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "token" {
		return runToken(ctx, args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "starting", cfg.logAttrs()...)
	if !cfg.hasKey() && !isLoopback(cfg.Addr) {
		logger.LogAttrs(ctx, slog.LevelWarn, "INSECURE: --insecure and no token key: anyone who reaches "+cfg.Addr+" can read and change every room")
	}
	n, err := build(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer n.close()
	if err := n.serve(ctx, stdout); err != nil {
		return err
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "stopped")
	return nil
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

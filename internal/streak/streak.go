// Package streak logs the failures of a loop that retries: once per
// failure streak at Error, and the recovery once.
package streak

import (
	"context"
	"log/slog"
)

// Logger logs a loop's outcomes: the first failure of a streak at Error,
// the following ones at Debug, and the first success after a failure at
// Info. One Logger serves one loop; it is not safe for concurrent use.
type Logger struct {
	log     *slog.Logger
	what    string
	failing bool
}

// New returns a Logger writing to log about what ("redis reader"):
// "<what> failing, retrying" and "<what> recovered".
func New(log *slog.Logger, what string) *Logger {
	return &Logger{log: log, what: what}
}

// Fail records a failure.
func (s *Logger) Fail(ctx context.Context, err error) {
	level := slog.LevelDebug
	if !s.failing {
		s.failing, level = true, slog.LevelError
	}
	s.log.LogAttrs(ctx, level, s.what+" failing, retrying", slog.String("error", err.Error()))
}

// OK records a success.
func (s *Logger) OK(ctx context.Context) {
	if s.failing {
		s.failing = false
		s.log.LogAttrs(ctx, slog.LevelInfo, s.what+" recovered")
	}
}

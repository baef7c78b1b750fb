package streak

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	s := New(log, "loop")
	ctx := t.Context()
	s.OK(ctx)
	s.Fail(ctx, errors.New("one"))
	s.Fail(ctx, errors.New("two"))
	s.OK(ctx)
	s.OK(ctx)
	s.Fail(ctx, errors.New("three"))
	want := []string{
		`level=ERROR msg="loop failing, retrying" error=one`,
		`level=DEBUG msg="loop failing, retrying" error=two`,
		`level=INFO msg="loop recovered"`,
		`level=ERROR msg="loop failing, retrying" error=three`,
	}
	if got := strings.Split(strings.TrimSpace(buf.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got log\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

package sqlstore

import (
	"fmt"
	"time"
)

// Now returns the current time as the store records it: UTC, microseconds.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// ParseTime parses a time stored as text (SQLite).
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("scan time: %w", err)
	}
	return t.UTC(), nil
}

// dbTime scans a time stored by either dialect.
type dbTime struct{ t time.Time }

func (d *dbTime) Scan(v any) (err error) {
	switch v := v.(type) {
	case time.Time:
		d.t = v.UTC()
		return nil
	case string:
		d.t, err = ParseTime(v)
	case []byte:
		d.t, err = ParseTime(string(v))
	default:
		return fmt.Errorf("scan time: unsupported type %T", v)
	}
	return err
}

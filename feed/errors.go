package feed

import "errors"

var (
	// ErrClosed reports use of a hub or log that has been closed.
	ErrClosed = errors.New("feed closed")
	// ErrSlowConsumer reports a subscriber dropped because its buffer was full.
	ErrSlowConsumer = errors.New("slow consumer")
	// ErrUnavailable reports that the log's backing service (Redis) could
	// not be reached; the caller may retry.
	ErrUnavailable = errors.New("feed unavailable")
)

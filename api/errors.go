package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
)

// Error is an error answered to the client as
// {"error":{"code":"...","message":"..."}} with Status.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(code, msg string) *Error { return &Error{http.StatusBadRequest, code, msg} }

var (
	errMethodNotAllowed = &Error{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this path"}
	errRouteNotFound    = &Error{http.StatusNotFound, "not_found", "no such route"}
)

// sentinels maps the store's and the feed's sentinel errors to answers. It
// is the one place where they meet HTTP statuses.
var sentinels = []struct {
	err error
	ans Error
}{
	{repo.ErrNotFound, Error{http.StatusNotFound, "not_found", "no such element"}},
	{repo.ErrVersionMismatch, Error{http.StatusPreconditionFailed, "version_mismatch", "the element's current version does not match If-Match"}},
	{repo.ErrExists, Error{http.StatusPreconditionFailed, "already_exists", "the element exists and If-None-Match: * was given"}},
	{repo.ErrInvalid, Error{http.StatusBadRequest, "bad_json", "the element data or patch is not a valid JSON object"}},
	{repo.ErrUnavailable, Error{http.StatusServiceUnavailable, "database_unavailable", "the database is unavailable; retry later"}},
	{feed.ErrClosed, Error{http.StatusServiceUnavailable, "shutting_down", "this node is shutting down; reconnect"}},
	{feed.ErrBadCursor, Error{http.StatusBadRequest, "bad_cursor", "Last-Event-ID must be a sequence number such as 42 or 42-0"}},
}

// writeError answers err as JSON. Errors that are neither an *Error nor a
// known sentinel are logged once and answered as a 500.
func writeError(c *gin.Context, err error) {
	c.Abort()
	var e *Error
	if !errors.As(err, &e) {
		for _, s := range sentinels {
			if errors.Is(err, s.err) {
				ans := s.ans
				e = &ans
				break
			}
		}
	}
	if e == nil {
		_ = c.Error(err) // logged by the request log middleware
		e = &Error{http.StatusInternalServerError, "internal", "internal error"}
	}
	if e.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	c.JSON(e.Status, gin.H{"error": gin.H{"code": e.Code, "message": e.Message}})
}

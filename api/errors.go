package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/internal/jsonmerge"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// Error is an error answered to the client as
// {"error":{"code":"...","message":"..."}} with Status.
type Error struct {
	Status  int
	Code    string
	Message string
}

// errorBody is the JSON of an answered error. A merge conflict
// (repo.ConflictError) also says where: conflicts and the current element;
// a trimmed history (trimmedError), the oldest event retained.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Code      string               `json:"code"`
	Message   string               `json:"message"`
	Conflicts []jsonmerge.Conflict `json:"conflicts,omitempty"`
	Current   *roomfeed.Element    `json:"current,omitempty"`
	// Oldest: for history_trimmed, the oldest seq retained or reachable;
	// for versions_trimmed, the oldest version kept.
	Oldest string `json:"oldest,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// trimmedError is a 410 history_trimmed that also names the oldest event
// still retained.
type trimmedError struct {
	err    *Error
	oldest int64
}

func (t *trimmedError) Error() string { return t.err.Error() }
func (t *trimmedError) Unwrap() error { return t.err }

func badRequest(code, msg string) *Error { return &Error{http.StatusBadRequest, code, msg} }

// errorCodeKey holds the code of the error answered, for the metrics.
const errorCodeKey = "roomfeed.error_code"

var (
	errMethodNotAllowed = &Error{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this path"}
	errRouteNotFound    = &Error{http.StatusNotFound, "not_found", "no such route"}
	// errClientClosed uses nginx's 499: the client closed the request.
	errClientClosed = &Error{499, "client_closed", "the client closed the request"}

	// Authentication and authorization (auth.go). None of them says whether
	// the room exists, and none quotes the token.
	errNoToken          = &Error{http.StatusUnauthorized, "unauthorized", "a token is required: Authorization: Bearer <token>, the roomfeed_token cookie, or ?access_token= on the events route"}
	errBadAuthorization = &Error{http.StatusUnauthorized, "invalid_token", "Authorization must be one header of the form Bearer <token>"}
	errTokenInQuery     = &Error{http.StatusUnauthorized, "invalid_token", "access_token is accepted in the query only on the events route; send Authorization: Bearer <token>"}
	errInvalidToken     = &Error{http.StatusUnauthorized, "invalid_token", "the token is invalid"}
	errTokenExpired     = &Error{http.StatusUnauthorized, "token_expired", "the token has expired"}
	errForbiddenRead    = &Error{http.StatusForbidden, "forbidden", "the token does not grant read access to this room"}
	errForbiddenWrite   = &Error{http.StatusForbidden, "forbidden", "the token does not grant write access to this room"}
	errBadOrigin        = &Error{http.StatusForbidden, "bad_origin", "a write authenticated by cookie must come from an allowed Origin"}

	// Limits (limits.go).
	errHeadersTooLarge   = &Error{http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "the request headers are too large"}
	errRateLimited       = &Error{http.StatusTooManyRequests, "rate_limited", "too many writes with this token; retry after the time in Retry-After"}
	errSignalRateLimited = &Error{http.StatusTooManyRequests, "rate_limited", "too many signals from this token or address; retry after the time in Retry-After"}
	errTooManyStreams    = &Error{http.StatusTooManyRequests, "too_many_streams", "too many open feeds for this token or address; close one first"}
	errNodeFull          = &Error{http.StatusServiceUnavailable, "node_full", "this node serves its maximum number of feeds; retry later or elsewhere"}
)

// sentinels maps the store's and the feed's sentinel errors to answers. It
// is the one place where they meet HTTP statuses.
var sentinels = []struct {
	err error
	ans Error
}{
	{repo.ErrVersionsTrimmed, Error{http.StatusGone, "versions_trimmed", "that version and the ones before it are no longer kept; oldest is the oldest version kept"}},
	{repo.ErrSnapshotTrimmed, Error{http.StatusGone, "history_trimmed", "the room can no longer be read as of that seq (the versions of its elements back then are not kept); oldest is the oldest seq it can be read at"}},
	{repo.ErrAhead, Error{http.StatusBadRequest, "cursor_ahead", "at is beyond the room's head (the cursor of its snapshot)"}},
	{repo.ErrNoVersion, Error{http.StatusNotFound, "version_not_found", "the element never had that version"}},
	{repo.ErrDeletedVersion, Error{http.StatusUnprocessableEntity, "version_deleted", "that version is a deletion, which has no data to restore; revert to the version before it"}},
	{repo.ErrNotFound, Error{http.StatusNotFound, "not_found", "no such element"}},
	{repo.ErrVersionMismatch, Error{http.StatusPreconditionFailed, "version_mismatch", "the element's current version does not match If-Match"}},
	{repo.ErrExists, Error{http.StatusPreconditionFailed, "already_exists", "the element exists and If-None-Match: * was given"}},
	{repo.ErrRoomFull, Error{http.StatusConflict, "room_full", "the room holds the maximum number of elements; delete some first"}},
	{repo.ErrConflict, Error{http.StatusConflict, "conflict", "since the version in If-Match, the element changed the same paths differently: see conflicts (theirs is the current version) and current"}},
	{repo.ErrKeyReused, Error{http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key (or Op-ID) was used in this room for a different request; use a new key"}},
	{repo.ErrInvalid, Error{http.StatusBadRequest, "bad_json", "the element data or patch is not a valid JSON object"}},
	{repo.ErrStorageFull, Error{http.StatusInsufficientStorage, "storage_full", "the database's disk is full; nothing was written; retry later"}},
	{repo.ErrUnavailable, Error{http.StatusServiceUnavailable, "database_unavailable", "the database is unavailable; retry later"}},
	{sse.ErrClosed, Error{http.StatusServiceUnavailable, "shutting_down", "this node is shutting down; reconnect"}},
	{sse.ErrBusy, Error{http.StatusServiceUnavailable, "catch_up_busy", "too many feeds are catching up on this node; retry after the time in Retry-After"}},
	{feed.ErrUnavailable, Error{http.StatusServiceUnavailable, "feed_unavailable", "the feed is unavailable; retry later"}},
	{sse.ErrBadCursor, Error{http.StatusBadRequest, "bad_cursor", "Last-Event-ID must be a sequence number such as 42 or 42-0"}},
}

// writeError answers err as JSON. Errors that are neither an *Error nor a
// known sentinel are logged once and answered as a 500.
func writeError(c *gin.Context, err error) {
	c.Abort()
	var ahead *sse.CursorAheadError
	if errors.As(err, &ahead) {
		err = &Error{http.StatusBadRequest, "cursor_ahead", ahead.Error()}
	}
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
	if e == nil && c.Request.Context().Err() != nil {
		// The client went away mid-request (its context is cancelled, and
		// database/sql rolled the transaction back): not a server fault.
		// Nobody reads the answer; the status says what happened.
		e = errClientClosed
	}
	if e == nil {
		_ = c.Error(err) // logged by the request log middleware
		e = &Error{http.StatusInternalServerError, "internal", "internal error"}
	}
	switch h := c.Writer.Header(); {
	case (e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests) && h.Get("Retry-After") == "":
		h.Set("Retry-After", "1")
	case e.Status == http.StatusInsufficientStorage:
		h.Set("Retry-After", "5") // space comes back by an operator's hand, not in a second
	case e.Status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="roomfeed"`)
	}
	c.Set(errorCodeKey, e.Code)
	body := errorObject{Code: e.Code, Message: e.Message}
	var conflict *repo.ConflictError
	if e.Code == "conflict" && errors.As(err, &conflict) {
		body.Conflicts, body.Current = conflict.Conflicts, &conflict.Current
	}
	var trimmed *trimmedError
	if errors.As(err, &trimmed) {
		body.Oldest = strconv.FormatInt(trimmed.oldest, 10)
	}
	var gone *repo.TrimmedError
	if errors.As(err, &gone) && gone.Oldest > 0 {
		body.Oldest = strconv.FormatInt(gone.Oldest, 10)
	}
	c.JSON(e.Status, errorBody{body})
}

// handle adapts a handler that returns its error: writeError answers it
// here, once, so a handler reads as its steps.
func handle(h func(*gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			writeError(c, err)
		}
	}
}

package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
)

// An element's history, the room as of a seq, and reverts.

const (
	// defaultHistoryLimit and maxHistoryLimit bound a page of versions.
	defaultHistoryLimit = 50
	maxHistoryLimit     = 500
	// maxDigits bounds the numbers of the history routes (below 2^63).
	maxDigits = 18
)

var (
	errBadAt      = badRequest("bad_at", "at must be one sequence number, a whole number from 0 to the room's head, such as 42")
	errBadBefore  = badRequest("bad_before", "before must be one version, a whole number from 1, such as 7")
	errBadHistLim = badRequest("bad_limit", fmt.Sprintf("limit must be one whole number from 1 (at most %d versions are sent)", maxHistoryLimit))
	errBadVersion = badRequest("bad_version", `the body must be {"to_version": N} with N a whole number from 1`)
)

// versionBody is one version in GET .../history.
type versionBody struct {
	Version int64           `json:"version"`
	Seq     string          `json:"seq"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	OpID    string          `json:"op_id"`
	Type    string          `json:"type"`
	Kind    string          `json:"kind"`
	Data    json.RawMessage `json:"data"` // null for a deletion
}

type historyBody struct {
	Room     string        `json:"room"`
	ID       string        `json:"id"`
	Versions []versionBody `json:"versions"`
	Next     *int64        `json:"next"` // the before of the next page; null at the oldest kept version
}

// queryNumber reads the query parameter name as one whole number of at
// most maxDigits digits, at least min; absent is def. Anything else is bad.
func queryNumber(c *gin.Context, name string, min, def int64, bad error) (int64, error) {
	raws, ok := c.GetQueryArray(name)
	if !ok {
		return def, nil
	}
	if len(raws) != 1 || raws[0] == "" || len(raws[0]) > maxDigits {
		return 0, bad
	}
	for _, r := range raws[0] {
		if r < '0' || r > '9' {
			return 0, bad
		}
	}
	n, err := strconv.ParseInt(raws[0], 10, 64)
	if err != nil || n < min {
		return 0, bad
	}
	return n, nil
}

// history answers GET /rooms/{room}/elements/{id}/history: the element's
// kept versions, newest first, ?limit= of them (at most maxHistoryLimit)
// below version ?before=.
func (s *Server) history(c *gin.Context) error {
	id, err := elementID(c)
	if err != nil {
		return err
	}
	before, err := queryNumber(c, "before", 1, 0, errBadBefore)
	if err != nil {
		return err
	}
	limit, err := queryNumber(c, "limit", 1, defaultHistoryLimit, errBadHistLim)
	if err != nil {
		return err
	}
	h, err := s.store.History(c.Request.Context(), c.Param("room"), id, before, int(min(limit, maxHistoryLimit)))
	if err != nil {
		return err
	}
	body := historyBody{Room: h.Room, ID: h.ID, Versions: make([]versionBody, 0, len(h.Versions))}
	for _, v := range h.Versions {
		body.Versions = append(body.Versions, versionBody{
			Version: v.Version, Seq: strconv.FormatInt(v.Seq, 10), At: v.At, Actor: v.Actor,
			OpID: v.OpID, Type: v.Type, Kind: v.Kind, Data: v.Data,
		})
	}
	if h.Next > 0 {
		body.Next = &h.Next
	}
	s.cfg.Metrics.historyRead("versions")
	c.JSON(http.StatusOK, body)
	return nil
}

// snapshotAt answers GET /rooms/{room}/elements?at=<seq>: the room as of
// that seq, shaped like the snapshot, with cursor at.
func (s *Server) snapshotAt(c *gin.Context) error {
	at, err := queryNumber(c, "at", 0, 0, errBadAt)
	if err != nil {
		return err
	}
	snap, err := s.store.SnapshotAt(c.Request.Context(), c.Param("room"), at)
	if err != nil {
		return err
	}
	elements := snap.Elements
	if elements == nil {
		elements = []roomfeed.Element{}
	}
	s.cfg.Metrics.historyRead("snapshot_at")
	c.Header("Event-ID", strconv.FormatInt(snap.Cursor, 10))
	c.JSON(http.StatusOK, snapshotBody{Room: snap.Room, Cursor: strconv.FormatInt(snap.Cursor, 10), Elements: elements})
	return nil
}

// revertElement answers POST /rooms/{room}/elements/{id}/revert with
// {"to_version": N}: version N's kind and data written again as the next
// version (re-creating a deleted element: 201). If-Match, when given, must
// be the newest version, never merged.
func (s *Server) revertElement(c *gin.Context) error {
	w, err := s.elementWrite(c, "a revert")
	if err != nil {
		return err
	}
	body, err := s.readJSON(c, mediaJSON)
	if err != nil {
		return err
	}
	var b struct {
		ToVersion *int64 `json:"to_version"`
	}
	if err := decodeStrict(body, &b); err != nil {
		return err
	}
	if b.ToVersion == nil || *b.ToVersion < 1 {
		return errBadVersion
	}
	w.pre.MaxElements = s.maxElements()
	build := elementAnswer("")
	out, err := s.store.Revert(c.Request.Context(), w.room, w.id, *b.ToVersion, w.pre, writeMeta(c, w.key, body, build))
	return s.finish(c, out, err, build)
}

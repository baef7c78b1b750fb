package api

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo"
)

const (
	mediaJSON       = "application/json"
	mediaMergePatch = "application/merge-patch+json"
)

type elementBody struct {
	ID   string          `json:"id,omitempty"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// snapshotBody is the snapshot answer; the cursor is a string like every
// event id.
type snapshotBody struct {
	Room     string             `json:"room"`
	Cursor   string             `json:"cursor"`
	Elements []roomfeed.Element `json:"elements"`
}

type messageBody struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func (s *Server) snapshot(c *gin.Context) error {
	if _, ok := c.GetQuery("at"); ok {
		return s.snapshotAt(c)
	}
	snap, err := s.store.Snapshot(c.Request.Context(), c.Param("room"))
	if err != nil {
		return err
	}
	elements := snap.Elements
	if elements == nil {
		elements = []roomfeed.Element{}
	}
	c.Header("Event-ID", strconv.FormatInt(snap.Cursor, 10))
	c.JSON(http.StatusOK, snapshotBody{Room: snap.Room, Cursor: strconv.FormatInt(snap.Cursor, 10), Elements: elements})
	return nil
}

func (s *Server) getElement(c *gin.Context) error {
	id, err := elementID(c)
	if err != nil {
		return err
	}
	el, err := s.store.Get(c.Request.Context(), c.Param("room"), id)
	if err != nil {
		return err
	}
	c.Header("ETag", etag(el.Version))
	c.JSON(http.StatusOK, el)
	return nil
}

// readElement reads and validates the body of PUT and POST; it returns
// the body too, for the request's fingerprint.
func (s *Server) readElement(c *gin.Context) (elementBody, []byte, error) {
	var b elementBody
	body, err := s.readJSON(c, mediaJSON)
	if err != nil {
		return b, nil, err
	}
	if err := decodeStrict(body, &b); err != nil {
		return b, nil, err
	}
	if !roomfeed.KindPattern.MatchString(b.Kind) {
		return b, nil, badRequest("bad_kind", "kind must match "+roomfeed.KindPattern.String())
	}
	if err := s.checkObject("data", b.Data); err != nil {
		return b, nil, err
	}
	return b, body, checkJSONText("data", b.Data)
}

func (s *Server) putElement(c *gin.Context) error {
	w, err := s.elementWrite(c, "")
	if err != nil {
		return err
	}
	b, body, err := s.readElement(c)
	if err != nil {
		return err
	}
	if b.ID != "" && b.ID != w.id {
		return badRequest("bad_id", "the body's id differs from the id in the path")
	}
	w.pre.MaxElements = s.maxElements()
	build := elementAnswer("")
	out, err := s.store.Put(c.Request.Context(), w.room, w.id, b.Kind, b.Data, w.pre, writeMeta(c, w.key, body, build))
	return s.finish(c, out, err, build)
}

func (s *Server) createElement(c *gin.Context) error {
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	b, body, err := s.readElement(c)
	if err != nil {
		return err
	}
	id := b.ID
	if id == "" {
		id = newID()
	} else if !roomfeed.ValidName(id) {
		return badRequest("bad_id", "element id must match "+roomfeed.NamePattern.String())
	}
	pre := repo.Precondition{IfNoneMatchAny: true, MaxElements: s.maxElements()}
	build := elementAnswer("/rooms/" + c.Param("room") + "/elements/")
	out, err := s.store.Put(c.Request.Context(), c.Param("room"), id, b.Kind, b.Data, pre, writeMeta(c, key, body, build))
	return s.finish(c, out, err, build)
}

func (s *Server) patchElement(c *gin.Context) error {
	w, err := s.elementWrite(c, "a patch")
	if err != nil {
		return err
	}
	body, err := s.readJSON(c, mediaMergePatch, mediaJSON)
	if err != nil {
		return err
	}
	patch := json.RawMessage(body)
	if err := s.checkObject("patch", trimSpace(patch)); err != nil {
		return err
	}
	if err := checkJSONText("patch", patch); err != nil {
		return err
	}
	build := elementAnswer("")
	out, err := s.store.Patch(c.Request.Context(), w.room, w.id, patch, w.pre, writeMeta(c, w.key, body, build))
	return s.finish(c, out, err, build)
}

func (s *Server) deleteElement(c *gin.Context) error {
	w, err := s.elementWrite(c, "a delete")
	if err != nil {
		return err
	}
	out, err := s.store.Delete(c.Request.Context(), w.room, w.id, w.pre, writeMeta(c, w.key, nil, tombstoneAnswer))
	return s.finish(c, out, err, tombstoneAnswer)
}

func (s *Server) postMessage(c *gin.Context) error {
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	b, body, err := s.readMessage(c, "message", s.limits.cfg.MaxMessageBytes)
	if err != nil {
		return err
	}
	out, err := s.store.Message(c.Request.Context(), c.Param("room"), b.Event, b.Data, writeMeta(c, key, body, messageAnswer))
	return s.finish(c, out, err, messageAnswer)
}

// readMessage reads the {"event","data"} body of a custom message or of a
// signal (what): a name roomfeed.MessageName allows, and data, null when
// absent, of at most limit bytes (negative: no limit) and that any peer can
// carry (checkJSONText). It returns the body as sent too.
func (s *Server) readMessage(c *gin.Context, what string, limit int) (messageBody, []byte, error) {
	var b messageBody
	body, err := s.readJSON(c, mediaJSON)
	if err != nil {
		return b, nil, err
	}
	if err := decodeStrict(body, &b); err != nil {
		return b, nil, err
	}
	if !roomfeed.MessageName(b.Event) {
		return b, nil, badRequest("bad_event", "event must match "+roomfeed.MessagePattern.String()+
			" and not be reset, error, auth_expired or start with element. or presence.")
	}
	if len(b.Data) == 0 {
		b.Data = json.RawMessage("null")
	}
	if limit >= 0 && len(b.Data) > limit {
		return b, nil, &Error{http.StatusRequestEntityTooLarge, "data_too_large",
			fmt.Sprintf("%s data is larger than %d bytes", what, limit)}
	}
	return b, body, checkJSONText("data", b.Data)
}

// elementWrite is what every write to one element starts from: the room
// and id of the path, the request's preconditions and idempotency key.
type elementWrite struct {
	room, id string
	pre      repo.Precondition
	key      string
}

// elementWrite reads the parts of a write to one element that come before
// its body. noCreateOnly names the operation when If-None-Match: * makes no
// sense for it ("a patch"); "" allows it.
func (s *Server) elementWrite(c *gin.Context, noCreateOnly string) (elementWrite, error) {
	w := elementWrite{room: c.Param("room")}
	var err error
	if w.id, err = elementID(c); err != nil {
		return w, err
	}
	if w.pre, err = precondition(c); err != nil {
		return w, err
	}
	if w.pre.IfNoneMatchAny && noCreateOnly != "" {
		return w, badRequest("bad_precondition", "If-None-Match: * cannot apply to "+noCreateOnly)
	}
	w.key, err = idempotencyKey(c)
	return w, err
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// newID makes a server-side element id: 20 characters of base32 (100 bits).
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [20]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return string(b[:])
}

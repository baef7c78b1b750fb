package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo"
)

// roomName validates the :room path parameter for every room route, and
// ?client=, the person of open mode (person).
func (s *Server) roomName(c *gin.Context) {
	if !roomfeed.ValidName(c.Param("room")) {
		writeError(c, badRequest("bad_room", "room must match "+roomfeed.NamePattern.String()))
		return
	}
	if _, err := person(c); err != nil {
		writeError(c, err)
		return
	}
	c.Next()
}

func elementID(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !roomfeed.ValidName(id) {
		return "", badRequest("bad_id", "element id must match "+roomfeed.NamePattern.String())
	}
	return id, nil
}

// readJSON reads the request body as a JSON document of one of the accepted
// media types, within the body limit.
func (s *Server) readJSON(c *gin.Context, mediaTypes ...string) ([]byte, error) {
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !containsFold(mediaTypes, mt) {
		return nil, &Error{http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("Content-Type must be %s", strings.Join(mediaTypes, " or "))}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &Error{http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("request body is larger than %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, badRequest("bad_body", "could not read the request body")
	}
	if !utf8.Valid(body) {
		return nil, badRequest("bad_json", "request body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return nil, badRequest("bad_json", "request body is not valid JSON")
	}
	return body, nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// decodeStrict decodes a JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("bad_json", "request body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return badRequest("bad_json", "request body has data after the JSON value")
	}
	return nil
}

// checkObject checks that raw is a JSON object within the data limit.
func (s *Server) checkObject(field string, raw json.RawMessage) error {
	if len(raw) == 0 || raw[0] != '{' {
		return badRequest("bad_"+field, field+" must be a JSON object")
	}
	return s.checkSize(field, raw)
}

func (s *Server) checkSize(field string, raw json.RawMessage) error {
	if len(raw) > s.cfg.MaxDataBytes {
		return &Error{http.StatusRequestEntityTooLarge, field + "_too_large",
			fmt.Sprintf("%s is larger than %d bytes", field, s.cfg.MaxDataBytes)}
	}
	return nil
}

// precondition reads If-Match and If-None-Match. Versions are strong ETags
// holding a decimal version ("3"); If-Match: * means "must exist" and
// If-None-Match: * means "must not exist".
func precondition(c *gin.Context) (repo.Precondition, error) {
	var pre repo.Precondition
	if v := strings.TrimSpace(c.GetHeader("If-Match")); v != "" {
		if v == "*" {
			pre.IfMatchAny = true
		} else {
			n, err := parseETag(v)
			if err != nil {
				return pre, err
			}
			pre.IfMatch = &n
		}
	}
	if v := strings.TrimSpace(c.GetHeader("If-None-Match")); v != "" {
		if v != "*" {
			return pre, badRequest("bad_precondition", `If-None-Match supports only "*" on writes`)
		}
		pre.IfNoneMatchAny = true
	}
	if (pre.IfMatch != nil || pre.IfMatchAny) && pre.IfNoneMatchAny {
		return pre, badRequest("bad_precondition", "If-Match and If-None-Match cannot be combined")
	}
	return pre, nil
}

func parseETag(v string) (int64, error) {
	bad := badRequest("bad_precondition", `If-Match must be one version as a strong ETag, such as "3"`)
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, bad
	}
	digits := v[1 : len(v)-1]
	if digits == "" || len(digits) > 18 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 1 {
		return 0, bad
	}
	return n, nil
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/repo"
)

const (
	// maxKeyLen bounds an idempotency key (Idempotency-Key or Op-ID).
	maxKeyLen = 128
	// replayedKey marks a request answered by a replay, for the metrics.
	replayedKey = "roomfeed.replayed"
	jsonUTF8    = "application/json; charset=utf-8"
)

var errKeyMismatch = badRequest("bad_idempotency_key", "Idempotency-Key and Op-ID name one key: send one, or the same in both")

// idempotencyKey reads a write's idempotency key: Idempotency-Key (the IETF
// httpapi draft: an sf-string such as "abc", or a bare token) and Op-ID
// are the same key, "" when neither is sent. A key is 1 to 128 printable
// ASCII characters, spaces included (the draft's sf-string). A malformed Idempotency-Key, or two
// different keys (both headers, or one repeated), is 400
// bad_idempotency_key; a malformed Op-ID is 400 bad_op_id; an empty Op-ID
// is none.
func idempotencyKey(c *gin.Context) (string, error) {
	var keys []string
	for _, v := range c.Request.Header.Values("Idempotency-Key") {
		k, err := parseKey(v)
		if err != nil {
			return "", err
		}
		keys = append(keys, k)
	}
	for _, v := range c.Request.Header.Values("Op-ID") {
		if v == "" {
			continue
		}
		if !validKey(v) {
			return "", badRequest("bad_op_id", "Op-ID must be 1 to 128 printable ASCII characters")
		}
		keys = append(keys, v)
	}
	if len(keys) == 0 {
		return "", nil
	}
	for _, k := range keys[1:] {
		if k != keys[0] {
			return "", errKeyMismatch
		}
	}
	return keys[0], nil
}

// parseKey reads an Idempotency-Key value: an sf-string (RFC 8941: in
// quotes, with \" and \\ escapes) or the bare key.
func parseKey(v string) (string, error) {
	bad := badRequest("bad_idempotency_key", `Idempotency-Key must be 1 to 128 printable ASCII characters, bare or quoted ("abc")`)
	if strings.HasPrefix(v, `"`) {
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return "", bad
		}
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			switch v[i] {
			case '\\':
				if i++; i == len(v)-1 || (v[i] != '"' && v[i] != '\\') {
					return "", bad
				}
			case '"':
				return "", bad
			}
			b.WriteByte(v[i])
		}
		v = b.String()
	}
	if !validKey(v) {
		return "", bad
	}
	return v, nil
}

func validKey(k string) bool {
	if k == "" || len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint identifies a write request for its idempotency key: the
// SHA-256 of its method, path, If-Match, If-None-Match, person and body.
func fingerprint(c *gin.Context, who string, body []byte) string {
	h := sha256.New()
	for _, part := range []string{c.Request.Method, c.Request.URL.Path, c.GetHeader("If-Match"), c.GetHeader("If-None-Match"), who} {
		h.Write([]byte(strconv.Itoa(len(part)) + ":" + part + "\n"))
	}
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// writeMeta is who makes a write (person: the token's subject, or the
// ?client= name in open mode, which roomName checked), and with a key its
// idempotency: the fingerprint of the request with body, and build, the
// answer recorded.
func writeMeta(c *gin.Context, key string, body []byte, build answerFunc) repo.Meta {
	who, _ := person(c)
	m := repo.Meta{OpID: key, Actor: who}
	if key != "" {
		m.Idem = &repo.Idempotency{Key: key, Fingerprint: fingerprint(c, who, body), Answer: build}
	}
	return m
}

// answerFunc builds a write's answer from its outcome. It is pure, so the
// answer recorded with an idempotency key and the one sent are the same
// bytes.
type answerFunc = func(repo.Outcome) (repo.Answer, error)

// elementAnswer answers an element write: the element with its ETag and
// Event-ID, 201 if it was created, Merged-From after a merge, and, with a
// location (POST), Location: location + id.
func elementAnswer(location string) answerFunc {
	return func(out repo.Outcome) (repo.Answer, error) {
		a := answerOf(http.StatusOK, out.ElementJSON, out)
		if out.Created {
			a.Status = http.StatusCreated
		}
		a.Header["ETag"] = etag(out.Element.Version)
		if out.MergedFrom > 0 {
			a.Header["Merged-From"] = etag(out.MergedFrom)
		}
		if location != "" {
			a.Header["Location"] = location + out.Element.ID
		}
		return a, nil
	}
}

// tombstoneAnswer answers a delete: the tombstone and Event-ID.
func tombstoneAnswer(out repo.Outcome) (repo.Answer, error) {
	return answerOf(http.StatusOK, out.ElementJSON, out), nil
}

// messageAnswer answers a message: 201, the event as subscribers get it
// and Event-ID.
func messageAnswer(out repo.Outcome) (repo.Answer, error) {
	return answerOf(http.StatusCreated, out.Event.Data, out), nil
}

// answerOf is a write's JSON answer: status, body (bytes the store encoded
// once, for the event too) and the Event-ID of out.
func answerOf(status int, body []byte, out repo.Outcome) repo.Answer {
	return repo.Answer{Status: status, Body: body, Header: map[string]string{
		"Content-Type": jsonUTF8, "Event-ID": out.Event.ID(),
	}}
}

// finish answers a write the store ran: its error; or a replay, the
// recorded answer with Idempotent-Replayed: true; or the answer build makes
// of its outcome (its event already went to the publisher, through
// Store.OnCommit, when its batch committed).
func (s *Server) finish(c *gin.Context, out repo.Outcome, err error, build answerFunc) error {
	if err != nil {
		return err
	}
	if out.Replayed != nil {
		c.Set(replayedKey, true)
		c.Header("Idempotent-Replayed", "true")
		writeAnswer(c, *out.Replayed)
		return nil
	}
	// The event went to the publisher when its batch committed (OnCommit).
	s.cfg.Metrics.wrote(!out.Event.IsElement())
	if out.Answer != nil { // built once, when it was recorded with the key
		writeAnswer(c, *out.Answer)
		return nil
	}
	ans, err := build(out)
	if err != nil {
		return err
	}
	writeAnswer(c, ans)
	return nil
}

func writeAnswer(c *gin.Context, a repo.Answer) {
	for k, v := range a.Header {
		if k != "Content-Type" {
			c.Header(k, v)
		}
	}
	c.Data(a.Status, a.Header["Content-Type"], a.Body)
}

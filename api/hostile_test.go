package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// hostileCase is one bad request, sent byte for byte over TCP so that
// nothing in a client library cleans it up first.
type hostileCase struct {
	name    string
	method  string
	target  string     // request-target, sent verbatim
	body    string     // sent with Content-Length unless send is set
	headers [][]string // extra header lines, in order; a repeated name is sent twice
	noAuth  bool       // leave out the valid Authorization header
	noCT    bool       // leave out the default Content-Type
	// send, when set, writes the request itself (slow bodies).
	send   func(conn net.Conn, head string) error
	status int
	code   string // "" = any code
	// plain: net/http answers before the handler runs, so the answer is
	// its own text, not JSON (a header block beyond http.Server's
	// MaxHeaderBytes).
	plain bool
}

func h(kv ...string) [][]string {
	var out [][]string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, []string{kv[i], kv[i+1]})
	}
	return out
}

const (
	hostileBodyTimeout = 400 * time.Millisecond
	el                 = "/rooms/w1/elements/c1"
)

func hostileCases() []hostileCase {
	put := func(name, body string, status int, code string) hostileCase {
		return hostileCase{name: name, method: "PUT", target: el, body: body, status: status, code: code}
	}
	msg := func(name, body string, status int, code string) hostileCase {
		return hostileCase{name: name, method: "POST", target: "/rooms/w1/messages", body: body, status: status, code: code}
	}
	sig := func(name, body string, status int, code string) hostileCase {
		return hostileCase{name: "signal: " + name, method: "POST", target: "/rooms/w1/signals", body: body, status: status, code: code}
	}
	get := func(name, target string, status int, code string, headers ...string) hostileCase {
		return hostileCase{name: name, method: "GET", target: target, headers: h(headers...), status: status, code: code}
	}
	feedCase := func(name, query string, status int, code string, headers ...string) hostileCase {
		return hostileCase{name: name, method: "GET", target: "/rooms/w1/events" + query, headers: h(headers...), status: status, code: code}
	}
	revert := func(name, body string, status int, code string) hostileCase {
		return hostileCase{name: "revert: " + name, method: "POST", target: el + "/revert", body: body, status: status, code: code}
	}
	keyCase := func(name, method string, headers [][]string) hostileCase {
		c := hostileCase{name: name, method: method, target: el, headers: headers, status: 400, code: "bad_idempotency_key"}
		switch method {
		case "PUT":
			c.body = `{"kind":"item","data":{}}`
		case "PATCH":
			c.body, c.noCT = `{"a":1}`, true
			c.headers = append(c.headers, []string{"Content-Type", "application/merge-patch+json"})
		case "POST":
			c.target, c.body = "/rooms/w1/messages", `{"event":"chat","data":1}`
		}
		return c
	}
	deepArrays := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	deepObjects := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
	trickle := func(conn net.Conn, head string) error {
		if _, err := io.WriteString(conn, head+"Content-Length: 100\r\n\r\n"+`{"kind":"item","data":{`); err != nil {
			return err
		}
		for range 40 { // one byte per 100 ms: 4 s for the whole body
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(conn, " "); err != nil {
				return nil // the server gave up on us: what we want
			}
		}
		return nil
	}
	stall := func(conn net.Conn, head string) error {
		_, err := io.WriteString(conn, head+"Content-Length: 1000\r\n\r\n"+`{"kind":`)
		return err
	}
	chunkedStall := func(conn net.Conn, head string) error {
		_, err := io.WriteString(conn, head+"Transfer-Encoding: chunked\r\n\r\n8\r\n{\"kind\":\r\n")
		return err
	}
	chunkedHuge := func(conn net.Conn, head string) error {
		if _, err := io.WriteString(conn, head+"Transfer-Encoding: chunked\r\n\r\n"); err != nil {
			return err
		}
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 16<<10, strings.Repeat(" ", 16<<10))
		for range 20 { // 320 KiB against a 64 KiB limit
			if _, err := io.WriteString(conn, chunk); err != nil {
				return nil
			}
		}
		return nil
	}
	tooManyElements := "?element=e0"
	for i := 1; i <= 32; i++ {
		tooManyElements += "&element=e" + strconv.Itoa(i)
	}
	forgedDeep := "eyJhbGciOiJIUzI1NiJ9." + base64URL(strings.Repeat(`{"a":`, 2000)+"1"+strings.Repeat("}", 2000)) + ".c2ln"

	return []hostileCase{
		// Malformed JSON and bodies.
		put("truncated JSON", `{"kind":`, 400, "bad_json"),
		put("trailing garbage", `{"kind":"item","data":{}}xyz`, 400, "bad_json"),
		put("two documents", `{"kind":"item","data":{}}{"kind":"item","data":{}}`, 400, "bad_json"),
		put("empty body", ``, 400, "bad_json"),
		put("null body", `null`, 400, "bad_kind"),
		put("array body", `[{"kind":"item","data":{}}]`, 400, "bad_json"),
		put("single quotes", `{'kind':'item','data':{}}`, 400, "bad_json"),
		put("NaN", `{"kind":"item","data":{"n":NaN}}`, 400, "bad_json"),
		put("Infinity", `{"kind":"item","data":{"n":-Infinity}}`, 400, "bad_json"),
		put("comment", `{"kind":"item",/* hi */"data":{}}`, 400, "bad_json"),
		put("unknown field", `{"kind":"item","data":{},"version":99}`, 400, "bad_json"),
		put("deep nesting 10,000 arrays", `{"kind":"item","data":{"a":`+deepArrays+`}}`, 400, "bad_json"),
		put("deep nesting 10,000 objects", `{"kind":"item","data":`+deepObjects+`}`, 400, "bad_json"),
		// Numbers.
		put("huge exponent", `{"kind":"item","data":{"n":1e999999}}`, 400, "bad_data"),
		put("huge negative exponent number", `{"kind":"item","data":{"n":-1e400}}`, 400, "bad_data"),
		put("400-digit integer", `{"kind":"item","data":{"n":`+strings.Repeat("9", 400)+`}}`, 400, "bad_data"),
		put("1,000-digit fraction", `{"kind":"item","data":{"n":0.`+strings.Repeat("0", 1000)+`1}}`, 400, "bad_data"),
		put("leading zeros", `{"kind":"item","data":{"n":007}}`, 400, "bad_json"),
		// Encodings, NUL, surrogates.
		put("invalid UTF-8 in a value", "{\"kind\":\"item\",\"data\":{\"s\":\"\xff\xfe\"}}", 400, "bad_json"),
		put("invalid UTF-8 in a key", "{\"kind\":\"item\",\"data\":{\"\xc3\x28\":1}}", 400, "bad_json"),
		put("overlong UTF-8", "{\"kind\":\"item\",\"data\":{\"s\":\"\xc0\xae\xc0\xae\"}}", 400, "bad_json"),
		put("UTF-8 byte order mark", "\xef\xbb\xbf{\"kind\":\"item\",\"data\":{}}", 400, "bad_json"),
		put("UTF-16 body", "\xff\xfe{\x00\"\x00}\x00", 400, "bad_json"),
		put("raw NUL byte in a string", "{\"kind\":\"item\",\"data\":{\"s\":\"a\x00b\"}}", 400, "bad_json"),
		put("raw NUL byte between tokens", "{\"kind\":\"item\",\x00\"data\":{}}", 400, "bad_json"),
		put("escaped NUL in data", `{"kind":"item","data":{"s":"a\u0000b"}}`, 400, "bad_data"),
		put("escaped NUL in a key", `{"kind":"item","data":{"\u0000":1}}`, 400, "bad_data"),
		put("lone high surrogate", `{"kind":"item","data":{"s":"\ud800"}}`, 400, "bad_data"),
		put("lone low surrogate", `{"kind":"item","data":{"s":"\udc00x"}}`, 400, "bad_data"),
		put("reversed surrogate pair", `{"kind":"item","data":{"s":"\udc00\ud800"}}`, 400, "bad_data"),
		put("raw CR LF in data", "{\"kind\":\"item\",\"data\":{\"s\":\"a\r\nb\"}}", 400, "bad_json"),
		put("raw CR in data", "{\"kind\":\"item\",\"data\":{\"s\":\"a\rb\"}}", 400, "bad_json"),
		put("CR LF in kind", `{"kind":"item\r\nevent: x","data":{}}`, 400, "bad_kind"),
		put("look-alike kind", `{"kind":"іtem","data":{}}`, 400, "bad_kind"),
		put("data too large", `{"kind":"item","data":{"s":"`+strings.Repeat("x", 20<<10)+`"}}`, 413, "data_too_large"),
		put("body too large", `{"kind":"item","data":{"s":"`+strings.Repeat("x", 70<<10)+`"}}`, 413, "body_too_large"),
		{name: "server id with traversal", method: "POST", target: "/rooms/w1/elements", body: `{"id":"../../etc/passwd","kind":"item","data":{}}`, status: 400, code: "bad_id"},
		{name: "server id look-alike", method: "POST", target: "/rooms/w1/elements", body: `{"id":"с1","kind":"item","data":{}}`, status: 400, code: "bad_id"},
		// Messages: names and data that would break the SSE framing.
		msg("CR LF in event name", `{"event":"chat\r\ndata: forged","data":1}`, 400, "bad_event"),
		msg("CR in event name", `{"event":"chat\rid: 999","data":1}`, 400, "bad_event"),
		msg("LF in event name", `{"event":"chat\n\nevent: reset","data":1}`, 400, "bad_event"),
		msg("NUL in event name", `{"event":"chat\u0000","data":1}`, 400, "bad_event"),
		msg("raw CR LF in message data", "{\"event\":\"chat\",\"data\":\"a\r\n\r\nid: 9\"}", 400, "bad_json"),
		msg("escaped NUL in message data", `{"event":"chat","data":"\u0000"}`, 400, "bad_data"),
		msg("huge number in message data", `{"event":"chat","data":1e400}`, 400, "bad_data"),
		msg("reserved name auth_expired", `{"event":"auth_expired","data":1}`, 400, "bad_event"),
		msg("reserved name element.deleted", `{"event":"element.deleted","data":1}`, 400, "bad_event"),
		msg("look-alike event name", `{"event":"rеset","data":1}`, 400, "bad_event"),
		msg("event name too long", `{"event":"`+strings.Repeat("a", 65)+`","data":1}`, 400, "bad_event"),
		msg("message too large", `{"event":"chat","data":"`+strings.Repeat("x", 20<<10)+`"}`, 413, "data_too_large"),
		// Signals: a message's rules, 4 KiB of data, never recorded.
		sig("truncated JSON", `{"event":"cursor","data":{"x":`, 400, "bad_json"),
		sig("two documents", `{"event":"cursor"}{"event":"cursor"}`, 400, "bad_json"),
		sig("unknown field", `{"event":"cursor","data":1,"id":"7"}`, 400, "bad_json"),
		sig("array body", `[{"event":"cursor"}]`, 400, "bad_json"),
		sig("invalid UTF-8 in data", "{\"event\":\"cursor\",\"data\":\"\xff\"}", 400, "bad_json"),
		sig("raw NUL byte in data", "{\"event\":\"cursor\",\"data\":\"a\x00b\"}", 400, "bad_json"),
		sig("raw CR LF in data", "{\"event\":\"cursor\",\"data\":\"a\r\n\r\nid: 9\"}", 400, "bad_json"),
		sig("escaped NUL in data", `{"event":"cursor","data":{"s":"\u0000"}}`, 400, "bad_data"),
		sig("lone surrogate in data", `{"event":"cursor","data":"\ud800"}`, 400, "bad_data"),
		sig("huge number in data", `{"event":"cursor","data":1e400}`, 400, "bad_data"),
		sig("CR LF in event name", `{"event":"cursor\r\nid: 999","data":1}`, 400, "bad_event"),
		sig("NUL in event name", `{"event":"cursor\u0000","data":1}`, 400, "bad_event"),
		sig("reserved name reset", `{"event":"reset","data":1}`, 400, "bad_event"),
		sig("reserved name presence.left", `{"event":"presence.left","data":1}`, 400, "bad_event"),
		sig("look-alike event name", `{"event":"сursor","data":1}`, 400, "bad_event"),
		sig("data over 4 KiB", `{"event":"cursor","data":"`+strings.Repeat("x", 5<<10)+`"}`, 413, "data_too_large"),
		sig("body too large", `{"event":"cursor","data":"`+strings.Repeat("x", 70<<10)+`"}`, 413, "body_too_large"),
		{name: "signal: text/plain", method: "POST", target: "/rooms/w1/signals", body: `{"event":"cursor"}`, headers: h("Content-Type", "text/plain"), noCT: true, status: 415},
		{name: "signal: form", method: "POST", target: "/rooms/w1/signals", body: `event=cursor`, headers: h("Content-Type", "application/x-www-form-urlencoded"), noCT: true, status: 415},
		{name: "signal: access_token in the query", method: "POST", target: "/rooms/w1/signals?access_token=x", body: `{"event":"cursor"}`, noAuth: true, status: 401, code: "invalid_token"},
		{name: "signal: to a traversal room", method: "POST", target: "/rooms/%2e%2e/signals", body: `{"event":"cursor"}`, status: 400, code: "bad_room"},
		{name: "signal: GET", method: "GET", target: "/rooms/w1/signals", status: 405},
		{name: "signal: chunked body never finished", method: "POST", target: "/rooms/w1/signals", send: chunkedStall, status: 400, code: "bad_body"},
		{name: "patch with huge number", method: "PATCH", target: el, body: `{"n":1e400}`, headers: h("Content-Type", "application/merge-patch+json"), noCT: true, status: 400, code: "bad_patch"},
		{name: "patch with lone surrogate", method: "PATCH", target: el, body: `{"s":"\ud83d"}`, headers: h("Content-Type", "application/merge-patch+json"), noCT: true, status: 400, code: "bad_patch"},
		// Ids: traversal, look-alikes, control characters.
		get("room ..", "/rooms/../elements", 400, "bad_room"),
		get("room %2e%2e", "/rooms/%2e%2e/elements", 400, "bad_room"),
		get("element ..", "/rooms/w1/elements/..", 400, "bad_id"),
		get("element %2e%2e", "/rooms/w1/elements/%2e%2e", 400, "bad_id"),
		get("element with encoded slashes", "/rooms/w1/elements/..%2f..%2fetc%2fpasswd", 404, "not_found"),
		get("room with encoded slash", "/rooms/w1%2f..%2fw2/elements", 404, "not_found"),
		get("room with backslashes", "/rooms/..%5c..%5cw2/elements", 400, "bad_room"),
		get("element .hidden", "/rooms/w1/elements/.hidden", 400, "bad_id"),
		get("room Cyrillic a", "/rooms/w%D0%B01/elements", 400, "bad_room"),
		get("room fullwidth w", "/rooms/%EF%BD%971/elements", 400, "bad_room"),
		get("element zero-width space", "/rooms/w1/elements/c%E2%80%8B1", 400, "bad_id"),
		get("element overlong dots", "/rooms/w1/elements/%C0%AE%C0%AE", 400, "bad_id"),
		get("element NUL", "/rooms/w1/elements/c1%00", 400, "bad_id"),
		get("element CR LF", "/rooms/w1/elements/c1%0D%0AX-Injected:%201", 400, "bad_id"),
		get("room CR", "/rooms/w1%0D/elements", 400, "bad_room"),
		get("room trailing space", "/rooms/w1%20/elements", 400, "bad_room"),
		get("room of 129 characters", "/rooms/"+strings.Repeat("r", 129)+"/elements", 400, "bad_room"),
		{name: "PUT to a traversal id", method: "PUT", target: "/rooms/w1/elements/%2e%2e", body: `{"kind":"item","data":{}}`, status: 400, code: "bad_id"},
		{name: "DELETE a look-alike id", method: "DELETE", target: "/rooms/w1/elements/%D1%811", status: 400, code: "bad_id"},
		// Cursors.
		feedCase("negative cursor", "", 400, "bad_cursor", "Last-Event-ID", "-1"),
		feedCase("cursor -0", "", 400, "bad_cursor", "Last-Event-ID", "-0"),
		feedCase("cursor 2^64", "", 400, "bad_cursor", "Last-Event-ID", "18446744073709551616"),
		feedCase("cursor 2^63", "", 400, "bad_cursor", "Last-Event-ID", "9223372036854775808"),
		feedCase("cursor max int64", "", 400, "cursor_ahead", "Last-Event-ID", "9223372036854775807"),
		feedCase("cursor 2^64 in the query", "?last_event_id=18446744073709551616", 400, "bad_cursor"),
		feedCase("negative cursor in the query", "?last_event_id=-5", 400, "bad_cursor"),
		feedCase("hex cursor", "", 400, "bad_cursor", "Last-Event-ID", "0x10"),
		feedCase("exponent cursor", "", 400, "bad_cursor", "Last-Event-ID", "1e3"),
		feedCase("cursor list", "", 400, "bad_cursor", "Last-Event-ID", "1, 2"),
		feedCase("cursor other stream id", "", 400, "bad_cursor", "Last-Event-ID", "1-1"),
		feedCase("conflicting Last-Event-ID", "", 400, "bad_cursor", "Last-Event-ID", "0", "Last-Event-ID", "1"),
		feedCase("repeated Last-Event-ID", "", 400, "bad_cursor", "Last-Event-ID", "1", "Last-Event-ID", "1"),
		feedCase("repeated last_event_id", "?last_event_id=0&last_event_id=1", 400, "bad_cursor"),
		feedCase("NUL cursor in the query", "?last_event_id=%00", 400, "bad_cursor"),
		feedCase("20 KB cursor", "", 400, "bad_cursor", "Last-Event-ID", strings.Repeat("9", 20<<10)),
		// Filters, on both feeds.
		feedCase("type in capitals", "?type=Chat", 400, "bad_filter"),
		feedCase("empty type", "?type=", 400, "bad_filter"),
		feedCase("type with CR LF", "?type=chat%0D%0Aid:%209", 400, "bad_filter"),
		feedCase("type of 65 characters", "?type="+strings.Repeat("a", 65), 400, "bad_filter"),
		feedCase("look-alike kind", "?kind=%D1%96tem", 400, "bad_filter"),
		feedCase("kind with a slash", "?kind=item/x", 400, "bad_filter"),
		feedCase("element ..", "?element=..", 400, "bad_filter"),
		feedCase("element NUL", "?element=c1%00", 400, "bad_filter"),
		feedCase("33 elements", tooManyElements, 400, "bad_filter"),
		get("multiplexed feed with a bad kind", "/events?room=w1&kind=Bad", 400, "bad_filter"),
		// Formats and pages of history.
		feedCase("format xml", "?format=xml", 400, "bad_format"),
		feedCase("repeated format", "?format=json&format=sse", 400, "bad_format"),
		feedCase("after on a stream", "?after=1", 400, "bad_format"),
		feedCase("limit on a stream", "?limit=5", 400, "bad_format"),
		get("a page of the multiplexed feed", "/events?room=w1&format=json", 400, "bad_format"),
		get("after on the multiplexed feed", "/events?room=w1&after=1", 400, "bad_format"),
		feedCase("page after -1", "?format=json&after=-1", 400, "bad_cursor"),
		feedCase("page after abc", "?format=json&after=abc", 400, "bad_cursor"),
		feedCase("page after empty", "?format=json&after=", 400, "bad_cursor"),
		feedCase("page after 2^64", "?format=json&after=18446744073709551616", 400, "bad_cursor"),
		feedCase("page after max int64", "?format=json&after=9223372036854775807", 400, "cursor_ahead"),
		feedCase("page after the head", "?format=json&after=3", 400, "cursor_ahead"),
		feedCase("repeated after", "?format=json&after=0&after=1", 400, "bad_cursor"),
		feedCase("page with Last-Event-ID", "?format=json", 400, "bad_cursor", "Last-Event-ID", "1"),
		feedCase("page with last_event_id", "?format=json&last_event_id=1", 400, "bad_cursor"),
		feedCase("page by Accept with a bad after", "?after=x", 400, "bad_cursor", "Accept", "application/json"),
		feedCase("limit 0", "?format=json&limit=0", 400, "bad_limit"),
		feedCase("limit -1", "?format=json&limit=-1", 400, "bad_limit"),
		feedCase("limit +5", "?format=json&limit=%2B5", 400, "bad_limit"),
		feedCase("limit 1e3", "?format=json&limit=1e3", 400, "bad_limit"),
		feedCase("limit empty", "?format=json&limit=", 400, "bad_limit"),
		feedCase("limit 2^64", "?format=json&limit=18446744073709551616", 400, "bad_limit"),
		feedCase("repeated limit", "?format=json&limit=10&limit=20", 400, "bad_limit"),
		// Headers.
		get("headers beyond the API limit", "/rooms/w1/elements", 431, "headers_too_large", "X-Padding", strings.Repeat("p", 40<<10)),
		get("many small headers", "/rooms/w1/elements", 431, "headers_too_large", manyHeaders(2000)...),
		{name: "header block beyond MaxHeaderBytes", method: "GET", target: "/rooms/w1/elements", headers: h("X-Padding", strings.Repeat("p", 1100<<10)), status: 431, plain: true},
		{name: "20 KB If-Match", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("If-Match", `"`+strings.Repeat("1", 20<<10)+`"`), status: 400, code: "bad_precondition"},
		{name: "Op-ID with non-ASCII", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Op-ID", "op\xc2\xa0id"), status: 400, code: "bad_op_id"},
		{name: "Op-ID of 129 characters", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Op-ID", strings.Repeat("o", 129)), status: 400, code: "bad_op_id"},
		{name: "Op-ID with a control character (refused by net/http)", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Op-ID", "op\x01id"), status: 400, plain: true},
		// Idempotency keys.
		keyCase("key of 129 characters", "PUT", h("Idempotency-Key", strings.Repeat("k", 129))),
		keyCase("quoted key of 129 characters", "POST", h("Idempotency-Key", `"`+strings.Repeat("k", 129)+`"`)),
		keyCase("key with a tab", "PATCH", h("Idempotency-Key", "a\tb")),
		// A control character in a header value: net/http refuses the
		// request (a plain 400) before any handler.
		{name: "key with a DEL", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Idempotency-Key", "a\x7fb"), status: 400, plain: true},
		keyCase("quoted key with an escaped tab", "PUT", h("Idempotency-Key", "\"a\\\tb\"")),
		keyCase("key with non-ASCII", "DELETE", h("Idempotency-Key", "k\xc2\xa0ey")),
		keyCase("quoted key with non-ASCII", "POST", h("Idempotency-Key", "\"k\xc3\xa9\"")),
		keyCase("empty key", "PUT", h("Idempotency-Key", "")),
		keyCase("empty quoted key", "PUT", h("Idempotency-Key", `""`)),
		keyCase("unterminated quoted key", "PATCH", h("Idempotency-Key", `"abc`)),
		keyCase("quoted key with a bad escape", "PUT", h("Idempotency-Key", `"a\nb"`)),
		keyCase("quoted key with an inner quote", "PUT", h("Idempotency-Key", `"a"b"`)),
		keyCase("key and Op-ID differ", "PUT", h("Idempotency-Key", "a", "Op-ID", "b")),
		keyCase("key and Op-ID differ on a message", "POST", h("Op-ID", "b", "Idempotency-Key", `"a"`)),
		keyCase("two different keys", "DELETE", h("Idempotency-Key", "a", "Idempotency-Key", "b")),
		{name: "9 KB bearer token", method: "GET", target: "/rooms/w1/elements", headers: h("Authorization", "Bearer "+strings.Repeat("a", 9<<10)), noAuth: true, status: 401, code: "invalid_token"},
		{name: "token with deeply nested claims", method: "GET", target: "/rooms/w1/elements", headers: h("Authorization", "Bearer "+forgedDeep), noAuth: true, status: 401, code: "invalid_token"},
		{name: "access_token on a write", method: "PUT", target: el + "?access_token=x", body: `{"kind":"item","data":{}}`, noAuth: true, status: 401, code: "invalid_token"},
		{name: "conflicting Authorization headers", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Authorization", "Bearer x"), status: 401, code: "invalid_token"},
		// Content types.
		{name: "text/plain", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Content-Type", "text/plain"), noCT: true, status: 415},
		{name: "form", method: "POST", target: "/rooms/w1/messages", body: `event=chat&data=1`, headers: h("Content-Type", "application/x-www-form-urlencoded"), noCT: true, status: 415},
		{name: "multipart", method: "PUT", target: el, body: "--b\r\n\r\n{}\r\n--b--", headers: h("Content-Type", "multipart/form-data; boundary=b"), noCT: true, status: 415},
		{name: "no content type", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, noCT: true, status: 415},
		{name: "malformed content type", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Content-Type", "application/json;;=;"), noCT: true, status: 415},
		{name: "merge patch on PUT", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Content-Type", "application/merge-patch+json"), noCT: true, status: 415},
		{name: "JSON look-alike type", method: "PUT", target: el, body: `{"kind":"item","data":{}}`, headers: h("Content-Type", "application/jsonx"), noCT: true, status: 415},
		// Methods.
		{name: "TRACE", method: "TRACE", target: el, status: 405},
		{name: "unknown method", method: "PROPFIND", target: "/rooms/w1/elements", status: 405},
		// History, the room as of a seq, reverts.
		get("at not a number", "/rooms/w1/elements?at=abc", 400, "bad_at"),
		get("at negative", "/rooms/w1/elements?at=-1", 400, "bad_at"),
		get("at empty", "/rooms/w1/elements?at=", 400, "bad_at"),
		get("at huge", "/rooms/w1/elements?at=99999999999999999999999", 400, "bad_at"),
		get("at with an exponent", "/rooms/w1/elements?at=1e3", 400, "bad_at"),
		get("at twice", "/rooms/w1/elements?at=1&at=2", 400, "bad_at"),
		get("at with a plus", "/rooms/w1/elements?at=%2B1", 400, "bad_at"),
		get("at beyond the head", "/rooms/w1/elements?at=999", 400, "cursor_ahead"),
		get("before not a number", el+"/history?before=x", 400, "bad_before"),
		get("before 0", el+"/history?before=0", 400, "bad_before"),
		get("before huge", el+"/history?before=18446744073709551616", 400, "bad_before"),
		get("history limit 0", el+"/history?limit=0", 400, "bad_limit"),
		get("history limit negative", el+"/history?limit=-5", 400, "bad_limit"),
		get("history limit not a number", el+"/history?limit=ten", 400, "bad_limit"),
		get("history of an unknown element", "/rooms/w1/elements/nobody/history", 404, "not_found"),
		revert("to_version a string", `{"to_version":"1"}`, 400, "bad_json"),
		revert("to_version a fraction", `{"to_version":1.5}`, 400, "bad_json"),
		revert("to_version huge", `{"to_version":1e30}`, 400, "bad_json"),
		revert("to_version beyond int64", `{"to_version":9223372036854775808}`, 400, "bad_json"),
		revert("to_version negative", `{"to_version":-1}`, 400, "bad_version"),
		revert("to_version 0", `{"to_version":0}`, 400, "bad_version"),
		revert("to_version null", `{"to_version":null}`, 400, "bad_version"),
		revert("no to_version", `{}`, 400, "bad_version"),
		revert("unknown field", `{"to_version":1,"x":2}`, 400, "bad_json"),
		revert("not JSON", `to_version=1`, 400, "bad_json"),
		revert("an array", `[1]`, 400, "bad_json"),
		revert("two documents", `{"to_version":1}{"to_version":1}`, 400, "bad_json"),
		revert("a version never had", `{"to_version":99}`, 404, "version_not_found"),
		{name: "revert: stale If-Match", method: "POST", target: el + "/revert", body: `{"to_version":1}`, headers: h("If-Match", `"7"`), status: 412, code: "version_mismatch"},
		{name: "revert: If-None-Match", method: "POST", target: el + "/revert", body: `{"to_version":1}`, headers: h("If-None-Match", "*"), status: 400, code: "bad_precondition"},
		{name: "revert: bad key", method: "POST", target: el + "/revert", body: `{"to_version":1}`, headers: h("Idempotency-Key", `"a\tb"`), status: 400, code: "bad_idempotency_key"},
		{name: "revert: text/plain", method: "POST", target: el + "/revert", body: `{"to_version":1}`, headers: h("Content-Type", "text/plain"), noCT: true, status: 415},
		{name: "revert: GET", method: "GET", target: el + "/revert", status: 405},
		// Slow and endless bodies.
		{name: "slowloris body", method: "PUT", target: el, send: trickle, status: 400, code: "bad_body"},
		{name: "body never sent", method: "PUT", target: el, send: stall, status: 400, code: "bad_body"},
		{name: "chunked body never finished", method: "POST", target: "/rooms/w1/messages", send: chunkedStall, status: 400, code: "bad_body"},
		{name: "endless chunked body", method: "PUT", target: el, send: chunkedHuge, status: 413, code: "body_too_large"},
	}
}

func manyHeaders(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("X-H%d", i), "0123456789abcdef")
	}
	return out
}

// TestHostileInput runs the catalogue against the real server over a real
// store: every case is answered with a 4xx JSON error, promptly, and the
// room is exactly as before.
func TestHostileInput(t *testing.T) {
	cases := hostileCases()
	if len(cases) < 60 {
		t.Fatalf("the catalogue has %d cases, want at least 60", len(cases))
	}
	forEachBackend(t, func(t *testing.T, be backend) {
		v, err := api.NewSecretVerifier([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		hub := sse.NewHub(1024)
		store, log := be.open(t, hub, 100000)
		feeds := sse.New(hub, log, sse.Config{}, nil, nil)
		srv := api.New(api.Config{
			Auth:         v,
			MaxBodyBytes: 64 << 10,
			MaxDataBytes: 16 << 10,
			Limits:       api.Limits{BodyTimeout: hostileBodyTimeout, MaxMessageBytes: 16 << 10, WriteRate: -1, SignalRate: -1},
		}, store, log, feeds, slog.New(slog.DiscardHandler))
		ts := start(t, be, srv, feeds, func(s *http.Server) { s.ReadHeaderTimeout = 2 * time.Second })
		tok := hs256(t, grant("mallory", []string{"*"}, []string{"*"}))
		ctx := t.Context()
		if _, err := store.Put(ctx, "w1", "c1", "character", json.RawMessage(`{"name":"Aria","hp":3}`), repo.Precondition{}, repo.Meta{}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Message(ctx, "w1", "chat", json.RawMessage(`"hi"`), repo.Meta{}); err != nil {
			t.Fatal(err)
		}
		before := snapshotJSON(t, store, "w1")
		since := time.Now()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				began := time.Now()
				status, header, body := hostileRoundTrip(t, ts.URL, tok, tc)
				if d := time.Since(began); d > 5*time.Second {
					t.Errorf("answered after %v", d)
				}
				if status != tc.status {
					t.Fatalf("got status %d, want %d (%.300s)", status, tc.status, body)
				}
				if tc.plain {
					return
				}
				if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("got Content-Type %q, want JSON (%.300s)", ct, body)
				}
				var e struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
					t.Fatalf("got body %.300q, want {\"error\":{\"code\",\"message\"}}", body)
				}
				if tc.code != "" && e.Error.Code != tc.code {
					t.Errorf("got code %q, want %q (%s)", e.Error.Code, tc.code, e.Error.Message)
				}
				if strings.Contains(string(body), tok) {
					t.Error("the answer quotes the token")
				}
			})
		}
		if after := snapshotJSON(t, store, "w1"); after != before {
			t.Errorf("the room changed:\nbefore %s\nafter  %s", before, after)
		}
		heads, err := store.RoomHeads(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if len(heads) != 0 {
			t.Errorf("rooms changed during the catalogue: %+v", heads)
		}
		// And the server still serves.
		mustStatus(t, do(t, http.MethodGet, ts.URL+"/rooms/w1/elements/c1", "", bearer(tok)...), http.StatusOK)
	})
}

// snapshotJSON is the room's snapshot and head as one comparable string.
func snapshotJSON(t *testing.T, store *repo.Store, room string) string {
	t.Helper()
	snap, err := store.Snapshot(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	head, err := store.Head(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(struct {
		Snap repo.Snapshot
		Head int64
	}{snap, head})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostileRoundTrip writes tc over a fresh connection and reads the answer,
// failing the test if none comes within 5 s.
func hostileRoundTrip(t *testing.T, base, tok string, tc hostileCase) (int, http.Header, []byte) {
	t.Helper()
	conn := dialRaw(t, base, 0)
	addr := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", tc.method, tc.target, addr)
	if !tc.noAuth {
		fmt.Fprintf(&head, "Authorization: Bearer %s\r\n", tok)
	}
	if !tc.noCT && (tc.body != "" || tc.send != nil || tc.method == "PUT" || tc.method == "POST") {
		head.WriteString("Content-Type: application/json\r\n")
	}
	for _, kv := range tc.headers {
		fmt.Fprintf(&head, "%s: %s\r\n", kv[0], kv[1])
	}
	errc := make(chan error, 1)
	go func() {
		if tc.send != nil {
			errc <- tc.send(conn, head.String())
			return
		}
		_, err := io.WriteString(conn, fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", head.String(), len(tc.body), tc.body))
		errc <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	conn.Close()
	<-errc
	return resp.StatusCode, resp.Header, body
}

// TestEdgeInputAccepted: the checks behind the catalogue do not refuse
// unusual but harmless JSON.
func TestEdgeInputAccepted(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	data := `{"emoji":"\ud83d\ude00","quoted":"a\"1e999\"\\","n":-1.5e300,"small":1e-400,"zero":0,"e":"\u00e9",` +
		`"escaped_backslash_u":"\\u0000","lines":"a\r\nb\rc","deep":[[[[1]]]],"big":9007199254740993}`
	mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/w1/elements/c1", `{"kind":"item","data":`+data+`}`), http.StatusCreated)
	mustStatus(t, do(t, http.MethodPatch, ts.URL+"/rooms/w1/elements/c1", `{"more":"\ud83d\ude00","n":null}`,
		"Content-Type", "application/merge-patch+json"), http.StatusOK)
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":{"text":"line1\r\nline2","n":-0.5}}`), http.StatusCreated)
}

package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// oaDoc is the OpenAPI document as generic JSON, with the lookups the
// tests need.
type oaDoc struct {
	root map[string]any
}

var oaMethods = []string{"get", "put", "post", "patch", "delete", "head", "options"}

// oaConditional are documented operations the router registers only in some
// configurations (or serves through NoRoute).
var oaConditional = map[string]bool{
	"GET /metrics": true, // only with metrics enabled
	"GET /":        true, // the web app, served by NoRoute
}

// oaServer is the real handler over a real SQLite store and the in-process
// log, the way `roomfeed` runs by default.
func oaServer(t *testing.T) (*api.Server, string) {
	t.Helper()
	store, err := repo.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "rf.db"), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hub := sse.NewHub(64)
	log := feed.NewMemLog(hub, store)
	feeds := sse.New(hub, log, sse.Config{}, nil, nil)
	srv := api.New(api.Config{}, store, log, feeds, slog.New(slog.DiscardHandler))
	ts := start(t, backends[0], srv, feeds, nil)
	return srv, ts.URL
}

// loadDoc fetches /openapi.json from the server.
func loadDoc(t *testing.T, base string) *oaDoc {
	t.Helper()
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: got %d %s, want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi: got %q, want 3.1.x", v)
	}
	return &oaDoc{root: root}
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

// resolve follows a local $ref ("#/components/...") if v is one.
func (d *oaDoc) resolve(v any) (map[string]any, error) {
	m := obj(v)
	for range 10 {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		target, err := d.pointer(ref)
		if err != nil {
			return nil, err
		}
		m = obj(target)
	}
	return nil, fmt.Errorf("$ref chain too long at %v", v)
}

func (d *oaDoc) pointer(ref string) (any, error) {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only local references are used", ref)
	}
	var cur any = d.root
	for part := range strings.SplitSeq(path, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		next, ok := obj(cur)[part]
		if !ok {
			return nil, fmt.Errorf("$ref %q does not resolve", ref)
		}
		cur = next
	}
	return cur, nil
}

// operation returns the documented operation for a method and an OpenAPI
// path, or nil.
func (d *oaDoc) operation(method, path string) map[string]any {
	return obj(obj(obj(d.root["paths"])[path])[strings.ToLower(method)])
}

// ginToOpenAPI turns /rooms/:room/elements/:id into /rooms/{room}/elements/{id}.
var ginParam = regexp.MustCompile(`[:*]([A-Za-z_]+)`)

func ginToOpenAPI(p string) string { return ginParam.ReplaceAllString(p, "{$1}") }

// TestOpenAPIListsEveryRoute: every route of the router is documented, and
// every documented operation is a route (or one of the conditional ones).
func TestOpenAPIListsEveryRoute(t *testing.T) {
	srv, base := oaServer(t)
	doc := loadDoc(t, base)
	routes := map[string]bool{}
	for _, r := range srv.Routes() {
		key := r.Method + " " + ginToOpenAPI(r.Path)
		routes[key] = true
		if doc.operation(r.Method, ginToOpenAPI(r.Path)) == nil {
			t.Errorf("route %s is not in openapi.json", key)
		}
	}
	ids := map[string]string{}
	for path, item := range obj(doc.root["paths"]) {
		for _, m := range oaMethods {
			op := obj(obj(item)[m])
			if op == nil {
				continue
			}
			key := strings.ToUpper(m) + " " + path
			if !routes[key] && !oaConditional[key] {
				t.Errorf("openapi.json documents %s, which the router does not have", key)
			}
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", key)
			} else if other, dup := ids[id]; dup {
				t.Errorf("operationId %s is used by %s and %s", id, other, key)
			}
			ids[id] = key
			if _, ok := op["responses"]; !ok {
				t.Errorf("%s has no responses", key)
			}
		}
	}
}

// TestOpenAPIExamplesValidate checks every example in the document against
// its schema: parameters, headers, request bodies, JSON responses, and the
// data of every event in the event-stream examples.
func TestOpenAPIExamplesValidate(t *testing.T) {
	_, base := oaServer(t)
	doc := loadDoc(t, base)
	checked := 0
	check := func(where string, schema any, example any) {
		t.Helper()
		checked++
		if err := doc.validate(schema, example, ""); err != nil {
			t.Errorf("%s: example does not match its schema: %v", where, err)
		}
	}
	paths := obj(doc.root["paths"])
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		item := obj(paths[path])
		for _, m := range oaMethods {
			op := obj(item[m])
			if op == nil {
				continue
			}
			key := strings.ToUpper(m) + " " + path
			params, _ := item["parameters"].([]any)
			opParams, _ := op["parameters"].([]any)
			for _, p := range append(slices.Clone(params), opParams...) {
				p, err := doc.resolve(p)
				if err != nil {
					t.Errorf("%s: %v", key, err)
					continue
				}
				if ex, ok := p["example"]; ok {
					check(fmt.Sprintf("%s parameter %v", key, p["name"]), p["schema"], ex)
				}
			}
			if rb := obj(op["requestBody"]); rb != nil {
				for mt, media := range obj(rb["content"]) {
					ex, ok := obj(media)["example"]
					if !ok {
						t.Errorf("%s request %s has no example", key, mt)
						continue
					}
					check(key+" request "+mt, obj(media)["schema"], ex)
				}
			}
			for status, r := range obj(op["responses"]) {
				r, err := doc.resolve(r)
				if err != nil {
					t.Errorf("%s %s: %v", key, status, err)
					continue
				}
				where := key + " " + status
				for name, h := range obj(r["headers"]) {
					h, err := doc.resolve(h)
					if err != nil {
						t.Errorf("%s header %s: %v", where, name, err)
					} else if ex, ok := h["example"]; ok {
						check(where+" header "+name, h["schema"], ex)
					}
				}
				for mt, media := range obj(r["content"]) {
					media := obj(media)
					ex, hasEx := media["example"]
					switch {
					case mt == "application/json" && hasEx:
						check(where+" "+mt, media["schema"], ex)
					case mt == "application/json" && key != "GET /openapi.json":
						t.Errorf("%s %s has no example", where, mt)
					case mt == "text/event-stream":
						s, _ := ex.(string)
						events := ssetest.Parse(s)
						if len(events) == 0 {
							t.Errorf("%s: the event-stream example has no events", where)
						}
						for _, ev := range events {
							var data any
							dec := json.NewDecoder(strings.NewReader(ev.Data))
							dec.UseNumber()
							if err := dec.Decode(&data); err != nil {
								t.Errorf("%s: event %s data is not JSON: %v", where, ev.ID, err)
								continue
							}
							check(where+" event "+ev.ID, media["x-event-data"], data)
						}
					}
				}
			}
		}
	}
	if checked < 40 {
		t.Errorf("checked %d examples, want the document's dozens", checked)
	}
}

// TestOpenAPIMatchesTheServer sends the document's request examples to a
// real server and checks each answer's status is documented for the
// operation, its documented headers are there, and its body matches the
// documented schema; then reads both feeds and checks every event's data.
func TestOpenAPIMatchesTheServer(t *testing.T) {
	_, base := oaServer(t)
	doc := loadDoc(t, base)
	example := func(method, path, mediaType string) string {
		t.Helper()
		media := obj(obj(obj(doc.operation(method, path)["requestBody"])["content"])[mediaType])
		b, err := json.Marshal(media["example"])
		if err != nil || media["example"] == nil {
			t.Fatalf("%s %s has no %s request example", method, path, mediaType)
		}
		return string(b)
	}
	send := func(method, path, url, mediaType, body string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", mediaType)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		doc.checkAnswer(t, method, path, resp, raw)
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		return resp
	}
	const el = "/rooms/{room}/elements/{id}"
	wantStatus := func(resp *http.Response, want int) {
		t.Helper()
		if resp.StatusCode != want {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: got %d %s, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body, want)
		}
	}
	wantStatus(send("PUT", el, "/rooms/oa/elements/c1", "application/json", example("PUT", el, "application/json"), "Op-ID", "tab-1:7"), 201)
	wantStatus(send("PUT", el, "/rooms/oa/elements/c1", "application/json", example("PUT", el, "application/json"), "If-Match", `"1"`), 200)
	wantStatus(send("PATCH", el, "/rooms/oa/elements/c1", "application/merge-patch+json", example("PATCH", el, "application/merge-patch+json")), 200)
	wantStatus(send("PATCH", el, "/rooms/oa/elements/c1", "application/json", example("PATCH", el, "application/json")), 200)
	wantStatus(send("POST", "/rooms/{room}/elements", "/rooms/oa/elements", "application/json", example("POST", "/rooms/{room}/elements", "application/json")), 201)
	wantStatus(send("POST", "/rooms/{room}/messages", "/rooms/oa/messages", "application/json", example("POST", "/rooms/{room}/messages", "application/json")), 201)
	const sig = "/rooms/{room}/signals"
	wantStatus(send("POST", sig, "/rooms/oa/signals?client=bram", "application/json", example("POST", sig, "application/json")), 202)
	wantStatus(send("GET", el, "/rooms/oa/elements/c1", "", ""), 200)
	wantStatus(send("GET", "/rooms/{room}/elements", "/rooms/oa/elements", "", ""), 200)
	wantStatus(send("DELETE", el, "/rooms/oa/elements/c1", "", ""), 200)
	// Documented failures.
	wantStatus(send("GET", el, "/rooms/oa/elements/c1", "", ""), 404)
	wantStatus(send("PUT", el, "/rooms/oa/elements/c2", "application/json", `{"kind":"Bad Kind","data":{}}`), 400)
	wantStatus(send("PUT", el, "/rooms/oa/elements/c2", "text/plain", `{}`), 415)
	wantStatus(send("PUT", el, "/rooms/oa/elements/c2", "application/json", example("PUT", el, "application/json"), "If-Match", `"9"`), 412)
	wantStatus(send("PUT", el, "/rooms/oa/elements/c2", "application/json", `{"kind":"a","data":{"x":"`+strings.Repeat("y", 70<<10)+`"}}`), 413)
	wantStatus(send("POST", sig, "/rooms/oa/signals", "application/json", `{"event":"cursor","data":"`+strings.Repeat("x", 5<<10)+`"}`), 413)
	wantStatus(send("GET", "/rooms/{room}/events", "/rooms/oa/events", "", "", "Last-Event-ID", "99"), 400)
	wantStatus(send("GET", "/rooms/{room}/events", "/rooms/oa/events?after=0&limit=3", "", "", "Accept", "application/json"), 200)
	wantStatus(send("GET", "/rooms/{room}/events", "/rooms/oa/events?format=json&kind=character&type=element.updated", "", ""), 200)
	wantStatus(send("GET", "/rooms/{room}/events", "/rooms/oa/events?format=json&limit=0", "", ""), 400)
	wantStatus(send("GET", "/healthz", "/healthz", "", ""), 200)
	wantStatus(send("GET", "/readyz", "/readyz", "", ""), 200)
	head := int64(7) // events written above

	feeds := []struct{ path, url, lastID string }{
		{"/rooms/{room}/events", "/rooms/oa/events", "0"},
		{"/events", "/events?room=oa&room=other", "oa:0,other:0"},
	}
	for _, f := range feeds {
		s, err := ssetest.Dial(t.Context(), base+f.url, f.lastID)
		if err != nil {
			t.Fatalf("open %s: %v", f.url, err)
		}
		doc.checkAnswer(t, "GET", f.path, s.Resp, nil)
		schema := obj(obj(obj(obj(obj(doc.operation("GET", f.path)["responses"])["200"])["content"])["text/event-stream"])["x-event-data"])
		for i := range head + 1 {
			if i == head { // and a live signal
				wantStatus(send("POST", sig, "/rooms/oa/signals", "application/json", example("POST", sig, "application/json")), 202)
			}
			ev := s.MustNext(t, 5*time.Second)
			var data any
			dec := json.NewDecoder(strings.NewReader(ev.Data))
			dec.UseNumber()
			if err := dec.Decode(&data); err != nil {
				t.Fatalf("%s event %s: data is not JSON: %v", f.url, ev.ID, err)
			}
			if err := doc.validate(schema, data, ""); err != nil {
				t.Errorf("%s event %s (%s) does not match FeedEvent: %v\n%s", f.url, ev.ID, ev.Type, err, ev.Data)
			}
		}
		s.Close()
	}

	// Retries, merges and conflicts (after the feeds: more events).
	msgPath, msg := "/rooms/{room}/messages", example("POST", "/rooms/{room}/messages", "application/json")
	wantStatus(send("POST", msgPath, "/rooms/oa/messages", "application/json", msg, "Idempotency-Key", `"m-1"`), 201)
	if r := send("POST", msgPath, "/rooms/oa/messages", "application/json", msg, "Op-ID", "m-1"); r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retried message: got %d without Idempotent-Replayed: true", r.StatusCode)
	}
	wantStatus(send("POST", msgPath, "/rooms/oa/messages", "application/json", `{"event":"other"}`, "Idempotency-Key", "m-1"), 422)
	wantStatus(send("PUT", el, "/rooms/oa/elements/c3", "application/json", `{"kind":"character","data":{"name":"A","hp":1}}`), 201)
	wantStatus(send("PATCH", el, "/rooms/oa/elements/c3", "application/merge-patch+json", `{"name":"B"}`), 200)
	if r := send("PATCH", el, "/rooms/oa/elements/c3", "application/merge-patch+json", `{"hp":2}`, "If-Match", `"1"`); r.Header.Get("Merged-From") != `"1"` {
		t.Errorf("stale PATCH: got %d, Merged-From %q, want 200 and \"1\"", r.StatusCode, r.Header.Get("Merged-From"))
	}
	wantStatus(send("PUT", el, "/rooms/oa/elements/c3", "application/json", `{"kind":"character","data":{"name":"C"}}`, "If-Match", `"1"`), 409)

	// History, the room as of a seq, reverts.
	const hist, rev = el + "/history", el + "/revert"
	wantStatus(send("GET", hist, "/rooms/oa/elements/c1/history?limit=2", "", ""), 200)
	wantStatus(send("GET", hist, "/rooms/oa/elements/c3/history?before=0", "", ""), 400)
	wantStatus(send("GET", hist, "/rooms/oa/elements/nobody/history", "", ""), 404)
	wantStatus(send("POST", rev, "/rooms/oa/elements/c1/revert", "application/json", example("POST", rev, "application/json")), 201)
	wantStatus(send("POST", rev, "/rooms/oa/elements/c3/revert", "application/json", example("POST", rev, "application/json"), "If-Match", `"3"`), 200)
	wantStatus(send("POST", rev, "/rooms/oa/elements/c3/revert", "application/json", `{"to_version":99}`), 404)
	wantStatus(send("POST", rev, "/rooms/oa/elements/c3/revert", "application/json", `{"to_version":"1"}`), 400)
	wantStatus(send("GET", "/rooms/{room}/elements", "/rooms/oa/elements?at=3", "", ""), 200)
	wantStatus(send("GET", "/rooms/{room}/elements", "/rooms/oa/elements?at=9999", "", ""), 400)
}

// checkAnswer checks a response against the operation's documentation:
// the status is documented, documented headers are present (unless
// "required": false) and match, and a JSON body matches the schema (body
// nil: not read).
func (d *oaDoc) checkAnswer(t *testing.T, method, path string, resp *http.Response, body []byte) {
	t.Helper()
	op := d.operation(method, path)
	if op == nil {
		t.Fatalf("%s %s is not documented", method, path)
	}
	where := fmt.Sprintf("%s %s %d", method, path, resp.StatusCode)
	r, err := d.resolve(obj(op["responses"])[fmt.Sprint(resp.StatusCode)])
	if err != nil || r == nil {
		t.Errorf("%s: status not documented (%v)", where, err)
		return
	}
	for name, h := range obj(r["headers"]) {
		h, _ := d.resolve(h)
		v := resp.Header.Get(name)
		if v == "" && h["required"] == false {
			continue // documented as not always sent
		}
		if v == "" {
			t.Errorf("%s: documented header %s is missing", where, name)
			continue
		}
		if err := d.validate(h["schema"], v, ""); err != nil {
			t.Errorf("%s: header %s %q: %v", where, name, v, err)
		}
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := strings.Cut(ct, ";")
	media, ok := obj(r["content"])[mt]
	if !ok {
		t.Errorf("%s: Content-Type %q is not documented", where, ct)
		return
	}
	if body == nil || mt != "application/json" {
		return
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s: body is not JSON: %v", where, err)
		return
	}
	if err := d.validate(obj(media)["schema"], v, ""); err != nil {
		t.Errorf("%s: body does not match the documented schema: %v\n%s", where, err, body)
	}
}

// validate checks v against a JSON Schema, for the keywords this document
// uses. An unknown keyword is an error, so the check is never silently
// weaker than the document.
func (d *oaDoc) validate(schemaV, v any, at string) error {
	if schemaV == nil {
		return fmt.Errorf("%s: no schema", orRoot(at))
	}
	schema := obj(schemaV)
	if ref, ok := schema["$ref"].(string); ok {
		target, err := d.pointer(ref)
		if err != nil {
			return err
		}
		if err := d.validate(target, v, at); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(schema)) {
		sv := schema[k]
		var err error
		switch k {
		case "$ref", "description", "example", "format", "title":
			if k == "format" && sv == "date-time" {
				if s, ok := v.(string); ok {
					if _, perr := time.Parse(time.RFC3339Nano, s); perr != nil {
						err = fmt.Errorf("%q is not a date-time", s)
					}
				}
			}
		case "type":
			err = checkType(sv, v)
		case "const":
			if !jsonEqual(sv, v) {
				err = fmt.Errorf("got %v, want %v", v, sv)
			}
		case "enum":
			if !slices.ContainsFunc(sv.([]any), func(e any) bool { return jsonEqual(e, v) }) {
				err = fmt.Errorf("%v is not one of %v", v, sv)
			}
		case "pattern":
			if s, ok := v.(string); ok && !regexp.MustCompile(sv.(string)).MatchString(s) {
				err = fmt.Errorf("%q does not match %s", s, sv)
			}
		case "minimum", "maximum":
			if n, ok := v.(json.Number); ok {
				a, _ := new(big.Float).SetString(n.String())
				b, _ := new(big.Float).SetString(sv.(json.Number).String())
				if c := a.Cmp(b); (k == "minimum" && c < 0) || (k == "maximum" && c > 0) {
					err = fmt.Errorf("%s is beyond the %s %s", n, k, sv)
				}
			}
		case "minItems":
			if a, ok := v.([]any); ok {
				if n, _ := sv.(json.Number).Int64(); int64(len(a)) < n {
					err = fmt.Errorf("%d items, want at least %d", len(a), n)
				}
			}
		case "required":
			if m, ok := v.(map[string]any); ok {
				for _, name := range sv.([]any) {
					if _, ok := m[name.(string)]; !ok {
						err = fmt.Errorf("%s: required property %q is missing", orRoot(at), name)
						break
					}
				}
			}
		case "properties":
			if m, ok := v.(map[string]any); ok {
				for name, ps := range obj(sv) {
					if pv, ok := m[name]; ok {
						if err = d.validate(ps, pv, at+"/"+name); err != nil {
							break
						}
					}
				}
			}
		case "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				props := obj(schema["properties"])
				for _, name := range slices.Sorted(maps.Keys(m)) {
					if _, known := props[name]; known {
						continue
					}
					if b, ok := sv.(bool); ok {
						if !b {
							err = fmt.Errorf("%s: property %q is not documented", orRoot(at), name)
							break
						}
						continue
					}
					if err = d.validate(sv, m[name], at+"/"+name); err != nil {
						break
					}
				}
			}
		case "items":
			if a, ok := v.([]any); ok {
				for i, item := range a {
					if err = d.validate(sv, item, fmt.Sprintf("%s/%d", at, i)); err != nil {
						break
					}
				}
			}
		case "oneOf", "anyOf":
			var matched []int
			var errs []string
			for i, sub := range sv.([]any) {
				if e := d.validate(sub, v, at); e == nil {
					matched = append(matched, i)
				} else {
					errs = append(errs, e.Error())
				}
			}
			if len(matched) == 0 || (k == "oneOf" && len(matched) > 1) {
				err = fmt.Errorf("%s: %s matched %v of the alternatives (%s)", orRoot(at), k, matched, strings.Join(errs, "; "))
			}
		default:
			return fmt.Errorf("schema keyword %q is not supported by this test's validator", k)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "/") && !strings.HasPrefix(err.Error(), "(root)") {
				err = fmt.Errorf("%s: %w", orRoot(at), err)
			}
			return err
		}
	}
	return nil
}

func orRoot(at string) string {
	if at == "" {
		return "(root)"
	}
	return at
}

func checkType(want, v any) error {
	types, ok := want.([]any)
	if !ok {
		types = []any{want}
	}
	for _, ty := range types {
		switch ty {
		case "object":
			_, ok = v.(map[string]any)
		case "array":
			_, ok = v.([]any)
		case "string":
			_, ok = v.(string)
		case "boolean":
			_, ok = v.(bool)
		case "null":
			ok = v == nil
		case "number":
			_, ok = v.(json.Number)
		case "integer":
			var n json.Number
			if n, ok = v.(json.Number); ok {
				_, err := n.Int64()
				ok = err == nil
			}
		default:
			return fmt.Errorf("unknown type %v", ty)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("%v is not of type %v", v, want)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

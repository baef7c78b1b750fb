// Test doubles for the room clients and FeedHub: a scriptable EventSource
// and an in-memory roomfeed server behind a fetch function (same HTTP
// contract as the Go server).

export class FakeEventSource {
  static instances = []

  static get last() {
    return FakeEventSource.instances[FakeEventSource.instances.length - 1]
  }

  static reset() {
    FakeEventSource.instances = []
  }

  constructor(url) {
    this.url = url
    this.readyState = 0
    this.listeners = new Map()
    this.onopen = null
    this.onerror = null
    FakeEventSource.instances.push(this)
  }

  get lastEventIdParam() {
    return new URL(this.url, 'http://x').searchParams.get('last_event_id')
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set())
    this.listeners.get(type).add(fn)
  }

  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn)
  }

  close() {
    this.readyState = 2
  }

  get closed() {
    return this.readyState === 2
  }

  // ---- driving it from a test ----

  open() {
    this.readyState = 1
    this.onopen?.({ type: 'open' })
  }

  /**
   * Deliver an SSE event: type plus the JSON payload; id defaults to
   * payload.id, '' = no id line. As in a browser, lastEventId is the last id
   * the stream carried, also on events without one (presence, signals).
   */
  emit(type, payload, id = payload?.id ?? '') {
    if (this.readyState === 2) return
    if (id !== '' && id !== undefined && id !== null) this.lastId = String(id)
    const ev = { type, data: typeof payload === 'string' ? payload : JSON.stringify(payload), lastEventId: this.lastId ?? '' }
    for (const fn of this.listeners.get(type) ?? []) fn(ev)
  }

  /** A failure: readyState 2 (CLOSED, fatal) or 0 (CONNECTING, browser retry). */
  fail(readyState = 2) {
    this.readyState = readyState
    this.onerror?.({ type: 'error' })
  }
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

/** Three-way JSON merge at JSON-pointer granularity (objects recurse; everything else is a leaf). */
export function merge3(base, theirs, mine, path = '', conflicts = []) {
  if (same(theirs, mine)) return theirs
  if (same(base, theirs)) return mine
  if (same(base, mine)) return theirs
  if (isObject(theirs) && isObject(mine) && (base === undefined || isObject(base))) {
    const b = base ?? {}
    const out = {}
    for (const k of new Set([...Object.keys(b), ...Object.keys(theirs), ...Object.keys(mine)])) {
      const v = merge3(b[k], theirs[k], mine[k], `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, conflicts)
      if (v !== undefined) out[k] = v
    }
    return out
  }
  const c = { path }
  if (base !== undefined) c.base = base
  if (theirs !== undefined) c.theirs = theirs
  if (mine !== undefined) c.mine = mine
  conflicts.push(c)
  return theirs
}

function applyMergePatch(target, patch) {
  if (!isObject(patch)) return patch
  const out = isObject(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = applyMergePatch(out[k], v)
  }
  return out
}

/**
 * A little roomfeed server in memory: fetch() + helpers to make feed events.
 * It speaks the write contract of issue 15: Idempotency-Key (or Op-ID)
 * replays the recorded answer byte for byte with Idempotent-Replayed: true
 * (422 idempotency_key_reused for another request), a stale If-Match on
 * PATCH/PUT is merged three ways (200 + Merged-From, or 409 conflict with
 * conflicts and current; 412 when the base version is not kept), and
 * POST /signals answers 202. Tests script failures with fail(), lose
 * answers with loseAnswers, and answer the feed's probe with feedStatus.
 */
export class FakeServer {
  constructor(room = 'w1') {
    this.room = room
    this.seq = 0
    this.elements = new Map()
    this.versions = new Map() // id -> Map(version -> element)
    this.events = []
    this.requests = []
    this.down = false
    this.hold = null // when set, write requests wait for this promise
    this.people = [] // GET /presence answers these
    this.idempotency = new Map() // key -> { fingerprint, status, headers, body }
    this.merges = true // stale If-Match merged three ways (issue 15); false: 412 as before
    this.idempotent = true // Idempotency-Key honoured (issue 15)
    this.failures = [] // scripted answers for the next writes: { status, code, retryAfter }
    this.loseAnswers = 0 // the next n writes are applied but their answer is lost (network error)
    this.feedStatus = 200 // what GET .../events answers (the client's probe)
    this.feedPage = false // true: the probe gets a web page (200 text/html) instead
    this.signals = [] // POST /signals received
    this.onSignal = null // called with each signal payload (to deliver it on a FakeEventSource)
    this.fetch = this.fetch.bind(this)
  }

  record(type, element, opId) {
    this.seq += 1
    const ev = { id: String(this.seq), room: this.room, type, element, at: new Date().toISOString() }
    if (opId) ev.op_id = opId
    this.events.push(ev)
    if (element && type !== 'element.deleted') {
      if (!this.versions.has(element.id)) this.versions.set(element.id, new Map())
      this.versions.get(element.id).set(element.version, element)
    }
    return ev
  }

  /** A change made by someone else; returns the event to emit. */
  upsert(id, kind, data) {
    const prev = this.elements.get(id)
    const el = { id, kind, version: (prev?.version ?? this.tombstone(id)) + 1, data, updated_at: new Date().toISOString() }
    this.elements.set(id, el)
    return this.record(prev ? 'element.updated' : 'element.created', el)
  }

  remove(id) {
    const prev = this.elements.get(id)
    this.elements.delete(id)
    this.tombstones.set(id, prev.version + 1)
    return this.record('element.deleted', { id, kind: prev.kind, version: prev.version + 1 })
  }

  get tombstones() {
    this._tombstones ??= new Map()
    return this._tombstones
  }

  tombstone(id) {
    return this.tombstones.get(id) ?? 0
  }

  /** Script the answers of the next writes: fail(503), fail(429, 'rate_limited', { retryAfter: 1 }). */
  fail(status, code = `http_${status}`, { retryAfter, times = 1 } = {}) {
    for (let i = 0; i < times; i++) this.failures.push({ status, code, retryAfter })
  }

  /** Events carrying one op id (a write applied twice would show up here twice). */
  eventsOf(opId) {
    return this.events.filter((e) => e.op_id === opId)
  }

  json(status, body, headers = {}) {
    const text = body === undefined ? null : JSON.stringify(body)
    const res = new Response(text, { status, headers: { 'Content-Type': 'application/json', ...headers } })
    res.text$ = text ?? '' // the body, readable at once (the idempotency record is made in the same tick)
    return res
  }

  error(status, code, extra = {}, headers = {}) {
    return this.json(status, { error: { code, message: `fake ${code}`, ...extra } }, headers)
  }

  async fetch(url, init = {}) {
    const method = init.method ?? 'GET'
    const headers = new Headers(init.headers)
    const u = new URL(url, 'http://x')
    const path = u.pathname
    this.requests.push({ method, path, headers, body: init.body, query: u.searchParams })
    if (this.down) throw new TypeError('Failed to fetch')
    if (method !== 'GET' && this.hold) await this.hold
    if (this.down) throw new TypeError('Failed to fetch')
    const roomPath = `/rooms/${encodeURIComponent(this.room)}`
    if (method === 'GET' && path === `${roomPath}/events` && u.searchParams.get('format') === 'json') {
      // A page of history: { room, events, next, head }.
      const after = Number(u.searchParams.get('after') ?? 0)
      const limit = Number(u.searchParams.get('limit') ?? 100)
      const events = this.events.filter((e) => Number(e.id) > after).slice(0, limit)
      const next = events.length ? events.at(-1).id : String(after)
      return this.json(200, { room: this.room, events, next, head: String(this.seq) })
    }
    if (method === 'GET' && (path === `${roomPath}/events` || path === '/events')) {
      if (this.feedPage) return new Response('<!doctype html><title>app</title>', { status: 200, headers: { 'Content-Type': 'text/html; charset=utf-8' } })
      return this.feedStatus === 200 ? new Response('', { status: 200, headers: { 'Content-Type': 'text/event-stream' } }) : this.error(this.feedStatus, { 401: 'unauthorized', 403: 'forbidden', 404: 'not_found' }[this.feedStatus] ?? `http_${this.feedStatus}`)
    }
    if (method === 'GET' && path === `${roomPath}/presence`) {
      return this.json(200, { room: this.room, people: [...this.people] })
    }
    if (method === 'POST' && path === `${roomPath}/signals`) {
      const f = this.failures.shift()
      if (f) return this.error(f.status, f.code, {}, f.retryAfter !== undefined ? { 'Retry-After': String(f.retryAfter) } : {})
      const { event, data } = JSON.parse(init.body)
      const person = u.searchParams.get('client') || 'anonymous'
      const sig = { room: this.room, type: event, data, person, at: new Date().toISOString() }
      this.signals.push(sig)
      this.onSignal?.(sig)
      return this.json(202, sig)
    }
    const m = path.match(/^\/rooms\/([^/]+)\/elements(?:\/([^/]+))?$/)
    if (!m) return this.error(404, 'not_found')
    const id = m[2] && decodeURIComponent(m[2])
    if (method === 'GET' && !id) {
      return this.json(200, { room: this.room, cursor: String(this.seq), elements: [...this.elements.values()] })
    }
    if (method === 'GET') {
      const el = this.elements.get(id)
      return el ? this.json(200, el, { ETag: `"${el.version}"` }) : this.error(404, 'not_found')
    }
    const key = this.idempotent ? (headers.get('Idempotency-Key') ?? headers.get('Op-ID')) : null
    const fingerprint = [method, path, headers.get('If-Match'), headers.get('If-None-Match'), init.body ?? ''].join('\n')
    if (key && this.idempotency.has(key)) {
      const rec = this.idempotency.get(key)
      if (rec.fingerprint !== fingerprint) return this.error(422, 'idempotency_key_reused')
      return new Response(rec.body, { status: rec.status, headers: { ...rec.headers, 'Idempotent-Replayed': 'true' } })
    }
    const f = this.failures.shift()
    if (f) return this.error(f.status, f.code, {}, f.retryAfter !== undefined ? { 'Retry-After': String(f.retryAfter) } : {})
    const res = this.write(method, id, headers, init.body, headers.get('Op-ID') ?? key)
    if (key && res.ok) {
      const rec = { fingerprint, status: res.status, headers: Object.fromEntries(res.headers), body: res.text$ }
      this.idempotency.set(key, rec)
    }
    if (this.loseAnswers > 0) {
      this.loseAnswers -= 1
      throw new TypeError('Failed to fetch (answer lost)')
    }
    return res
  }

  /** Apply one write (PUT, PATCH, DELETE of id; POST creates) and answer it. */
  write(method, id, headers, body, opId) {
    const ifMatch = headers.get('If-Match')
    const prev = id ? this.elements.get(id) : undefined
    const base = ifMatch && ifMatch !== '*' ? Number(ifMatch.replace(/"/g, '')) : null
    const stale = base !== null && (!prev || prev.version !== base)
    const answer = (status, ev, extra = {}) =>
      this.json(status, ev.element, { ETag: `"${ev.element.version}"`, 'Event-ID': ev.id, ...extra })

    // A stale If-Match on PUT/PATCH: merged three ways onto the current version.
    const merge = (mine, kind) => {
      const baseEl = this.versions.get(id)?.get(base)
      if (!this.merges || !prev || !baseEl) return { res: this.error(412, 'version_mismatch') }
      const conflicts = []
      const data = merge3(baseEl.data, prev.data, mine, '', conflicts)
      if (conflicts.length) return { res: this.error(409, 'conflict', { conflicts, current: prev }) }
      const el = { ...prev, kind: kind ?? prev.kind, version: prev.version + 1, data }
      this.elements.set(id, el)
      return { res: answer(200, this.record('element.updated', el, opId), { 'Merged-From': `"${base}"` }) }
    }

    if (method === 'POST' && !id) {
      const { kind, data } = JSON.parse(body)
      const newId = `el-${this.seq + 1}`
      const el = { id: newId, kind, version: 1, data, updated_at: 'now' }
      this.elements.set(newId, el)
      return answer(201, this.record('element.created', el, opId), { Location: `/rooms/${this.room}/elements/${newId}` })
    }
    if (method === 'PUT') {
      if (headers.get('If-None-Match') === '*' && prev) return this.error(412, 'already_exists')
      const { kind, data } = JSON.parse(body)
      if (stale) return merge(data, kind).res
      const el = { id, kind, version: (prev?.version ?? this.tombstone(id)) + 1, data, updated_at: 'now' }
      this.elements.set(id, el)
      return answer(prev ? 200 : 201, this.record(prev ? 'element.updated' : 'element.created', el, opId))
    }
    if (method === 'PATCH') {
      if (!prev) return this.error(404, 'not_found')
      const patch = JSON.parse(body)
      if (stale) {
        const baseEl = this.versions.get(id)?.get(base)
        return merge(baseEl ? applyMergePatch(baseEl.data, patch) : null).res
      }
      const el = { ...prev, version: prev.version + 1, data: applyMergePatch(prev.data, patch) }
      this.elements.set(id, el)
      return answer(200, this.record('element.updated', el, opId))
    }
    if (method === 'DELETE') {
      if (!prev) return this.error(404, 'not_found')
      if (stale) return this.error(412, 'version_mismatch')
      this.elements.delete(id)
      this.tombstones.set(id, prev.version + 1)
      const ev = this.record('element.deleted', { id, kind: prev.kind, version: prev.version + 1 }, opId)
      return answer(200, ev)
    }
    return this.error(405, 'method_not_allowed')
  }
}

/** Let pending promise callbacks run. */
export async function flush(times = 5) {
  for (let i = 0; i < times; i++) await new Promise((r) => setImmediate(r))
}

/** One fetch for several FakeServers, routed by the room in the path. */
export function multiFetch(servers) {
  return (url, init) => {
    const u = new URL(url, 'http://x')
    if (u.pathname === '/events') {
      // The multiplexed feed (the client's probe): the first refusing room answers.
      const refusing = u.searchParams.getAll('room').map((r) => servers[r]).find((s) => s && s.feedStatus !== 200)
      return (refusing ?? new FakeServer()).fetch(url, init)
    }
    const m = u.pathname.match(/^\/rooms\/([^/]+)\//)
    const server = m && servers[decodeURIComponent(m[1])]
    if (!server) return Promise.resolve(new Response('{"error":{"code":"not_found"}}', { status: 404 }))
    return server.fetch(url, init)
  }
}

/** Open the current FakeEventSource and let the snapshots load. */
export async function openLive() {
  const es = FakeEventSource.last
  es.open()
  await flush(10)
  return es
}

/** The multiplexed feed's frame for a server event: data as the server sends it. */
export function send(es, ev) {
  es.emit(ev.type, ev, `${ev.room}:${ev.id}`)
}

/** The query parameters of a stream's URL. */
export function params(es) {
  return new URL(es.url, 'http://x').searchParams
}

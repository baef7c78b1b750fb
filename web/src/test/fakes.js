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

  /** Deliver an SSE event: type plus the JSON payload; id defaults to payload.id. */
  emit(type, payload, id = payload?.id ?? '') {
    if (this.readyState === 2) return
    const ev = { type, data: typeof payload === 'string' ? payload : JSON.stringify(payload), lastEventId: String(id) }
    for (const fn of this.listeners.get(type) ?? []) fn(ev)
  }

  /** A failure: readyState 2 (CLOSED, fatal) or 0 (CONNECTING, browser retry). */
  fail(readyState = 2) {
    this.readyState = readyState
    this.onerror?.({ type: 'error' })
  }
}

/** A little roomfeed server in memory: fetch() + helpers to make feed events. */
export class FakeServer {
  constructor(room = 'w1') {
    this.room = room
    this.seq = 0
    this.elements = new Map()
    this.events = []
    this.requests = []
    this.down = false
    this.hold = null // when set, write requests wait for this promise
    this.people = [] // GET /presence answers these
    this.fetch = this.fetch.bind(this)
  }

  record(type, element, opId) {
    this.seq += 1
    const ev = { id: String(this.seq), room: this.room, type, element, at: new Date().toISOString() }
    if (opId) ev.op_id = opId
    this.events.push(ev)
    return ev
  }

  /** A change made by someone else; returns the event to emit. */
  upsert(id, kind, data) {
    const prev = this.elements.get(id)
    const el = { id, kind, version: (prev?.version ?? 0) + 1, data, updated_at: new Date().toISOString() }
    this.elements.set(id, el)
    return this.record(prev ? 'element.updated' : 'element.created', el)
  }

  remove(id) {
    const prev = this.elements.get(id)
    this.elements.delete(id)
    return this.record('element.deleted', { id, kind: prev.kind, version: prev.version + 1 })
  }

  json(status, body, headers = {}) {
    return new Response(body === undefined ? null : JSON.stringify(body), {
      status,
      headers: { 'Content-Type': 'application/json', ...headers },
    })
  }

  error(status, code) {
    return this.json(status, { error: { code, message: `fake ${code}` } })
  }

  async fetch(url, init = {}) {
    const method = init.method ?? 'GET'
    const headers = new Headers(init.headers)
    const path = new URL(url, 'http://x').pathname
    this.requests.push({ method, path, headers, body: init.body })
    if (this.down) throw new TypeError('Failed to fetch')
    if (method !== 'GET' && this.hold) await this.hold
    if (this.down) throw new TypeError('Failed to fetch')
    if (method === 'GET' && path === `/rooms/${encodeURIComponent(this.room)}/presence`) {
      return this.json(200, { room: this.room, people: [...this.people] })
    }
    const m = path.match(/^\/rooms\/([^/]+)\/elements(?:\/([^/]+))?$/)
    if (!m) return this.error(404, 'not_found')
    const id = m[2] && decodeURIComponent(m[2])
    const opId = headers.get('Op-ID')
    const ifMatch = headers.get('If-Match')
    const prev = id ? this.elements.get(id) : undefined
    const mismatch = () => ifMatch && (!prev || ifMatch !== `"${prev.version}"`)
    const answer = (status, ev) =>
      this.json(status, ev.element, { ETag: `"${ev.element.version}"`, 'Event-ID': ev.id })

    if (method === 'GET' && !id) {
      return this.json(200, { room: this.room, cursor: String(this.seq), elements: [...this.elements.values()] })
    }
    if (method === 'PUT') {
      if (headers.get('If-None-Match') === '*' && prev) return this.error(412, 'already_exists')
      if (mismatch()) return this.error(412, 'version_mismatch')
      const { kind, data } = JSON.parse(init.body)
      const el = { id, kind, version: (prev?.version ?? 0) + 1, data, updated_at: 'now' }
      this.elements.set(id, el)
      return answer(prev ? 200 : 201, this.record(prev ? 'element.updated' : 'element.created', el, opId))
    }
    if (method === 'PATCH') {
      if (!prev) return this.error(404, 'not_found')
      if (mismatch()) return this.error(412, 'version_mismatch')
      const patch = JSON.parse(init.body)
      const data = { ...prev.data }
      for (const [k, v] of Object.entries(patch)) v === null ? delete data[k] : (data[k] = v)
      const el = { ...prev, version: prev.version + 1, data }
      this.elements.set(id, el)
      return answer(200, this.record('element.updated', el, opId))
    }
    if (method === 'DELETE') {
      if (!prev) return this.error(404, 'not_found')
      if (mismatch()) return this.error(412, 'version_mismatch')
      this.elements.delete(id)
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
    const m = new URL(url, 'http://x').pathname.match(/^\/rooms\/([^/]+)\//)
    const server = m && servers[decodeURIComponent(m[1])]
    if (!server) return Promise.resolve(new Response('{"error":{"code":"not_found"}}', { status: 404 }))
    return server.fetch(url, init)
  }
}

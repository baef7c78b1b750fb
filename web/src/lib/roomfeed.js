// RoomFeed: a framework-free client for one roomfeed room.
//
// It loads the room snapshot, opens an EventSource at the snapshot cursor
// (`?last_event_id=`), applies every event exactly once and in order, and
// reopens the stream with the latest cursor after any failure (capped,
// jittered backoff). It keeps the confirmed server state of the room in
// `elements` and tells listeners about every change:
//
//   const feed = new RoomFeed({ room: 'w1' })
//   feed.on('change', ({ id, element }) => ...)   // element === null: deleted
//   feed.on('status', (status) => ...)            // connecting|live|reconnecting|offline
//   await feed.start()
//   await feed.patch('c1', { name: 'Bob' }, { ifMatch: 3 })
//   feed.stop()
//
// Events: 'status', 'snapshot', 'change', 'event' (every applied feed event,
// including custom messages), 'message' (custom messages only), 'presence'
// (the people in the room, a sorted array), 'error' (diagnostics; the client
// recovers on its own).
//
// With `hub` (a FeedHub, see feedhub.js; use hub.createFeed(room)) the feed
// has no EventSource of its own: the hub's one multiplexed stream carries
// every room of the page, and drives this feed through the _hub* methods.

import { Emitter } from './emitter.js'
import { toTokenSource } from './token.js'

export const ELEMENT_EVENTS = ['element.created', 'element.updated', 'element.deleted']
export const PRESENCE_EVENTS = ['presence.joined', 'presence.left']

/** An HTTP or network failure of a RoomFeed request. status 0 = no answer. */
export class RoomFeedError extends Error {
  constructor(message, { status = 0, code = 'network_error', cause } = {}) {
    super(message, cause ? { cause } : undefined)
    this.name = 'RoomFeedError'
    this.status = status
    this.code = code
  }

  /** True for 409/412: the element changed since the version the write was based on. */
  get isConflict() {
    return this.status === 409 || this.status === 412
  }
}

function defaultBaseUrl() {
  try {
    return import.meta.env?.VITE_ROOMFEED_URL || ''
  } catch {
    return ''
  }
}

let opCounter = 0
/** A unique token for the Op-ID header. */
export function newOpId() {
  opCounter += 1
  const rnd = globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2)
  return `${rnd}-${opCounter}`
}

export function parseSeq(value) {
  if (value === undefined || value === null || value === '') return null
  const s = String(value).replace(/-0$/, '') // "42-0" (Redis id) is accepted too
  if (!/^\d+$/.test(s)) return null
  return Number(s)
}

export class RoomFeed extends Emitter {
  /**
   * @param {object} opts
   * @param {string} opts.room room id
   * @param {string} [opts.baseUrl] server origin ('' = same origin)
   * @param {typeof EventSource} [opts.EventSource]
   * @param {typeof fetch} [opts.fetch]
   * @param {{min?: number, max?: number}} [opts.backoff] reconnect delays in ms
   * @param {string[]} [opts.messages] custom event names to listen for
   * @param {EventTarget|null} [opts.window] source of online/offline events
   * @param {() => boolean} [opts.isOnline]
   * @param {() => number} [opts.random] jitter source (tests)
   * @param {string|Function|{get: Function, refresh: Function}|null} [opts.token] the JWT, or where to
   *   get it (see token.js); default: VITE_ROOMFEED_TOKEN or VITE_ROOMFEED_TOKEN_ENDPOINT, else none
   * @param {string} [opts.client] display name sent as ?client= (presence); also turns presence on
   * @param {boolean} [opts.presence] keep `people` (GET /presence on every open + live events)
   * @param {import('./feedhub.js').FeedHub} [opts.hub] share the hub's multiplexed stream
   */
  constructor({
    room,
    baseUrl = defaultBaseUrl(),
    EventSource = globalThis.EventSource,
    fetch = globalThis.fetch?.bind(globalThis),
    backoff = {},
    messages = [],
    window: win = typeof globalThis.addEventListener === 'function' ? globalThis : null,
    isOnline = () => globalThis.navigator?.onLine !== false,
    random = Math.random,
    token,
    client = '',
    presence,
    hub = null,
    onStatus,
    onSnapshot,
    onEvent,
    onChange,
  } = {}) {
    super()
    if (!room) throw new Error('RoomFeed: room is required')
    this.room = room
    this.baseUrl = String(baseUrl).replace(/\/+$/, '')
    this._EventSource = EventSource
    this._fetch = fetch
    this.backoff = { min: backoff.min ?? 500, max: backoff.max ?? 15000 }
    this._messageNames = messages
    this._win = win
    this._isOnline = isOnline
    this._random = random
    this._tokens = toTokenSource(token)
    this._token = null // the token of the current stream
    this._refreshToken = false
    this.client = client || ''
    this._presenceOn = presence ?? (!!client || !!hub)
    this._hub = hub
    this._hubState = 'new' // hub mode: new (needs a snapshot) | loading (buffers events) | ready
    this._hubBuffer = []

    /** The people in the room now (presence), kept while presence is on. */
    this.people = new Set()
    this._presenceEpoch = 0
    this._presenceBuffer = null // presence events seen while GET /presence is in flight

    /** Confirmed server state: id -> element. */
    this.elements = new Map()
    /** Highest applied feed seq (number); null before the snapshot. */
    this.applied = null
    this.status = 'offline'

    this._elementSeq = new Map() // id -> seq of the state we hold (incl. tombstones)
    this._ownOps = new Set()
    this._es = null
    this._timer = null
    this._running = false
    this._generation = 0 // bumps on every (re)open; stale callbacks compare it
    this._attempt = 0
    this._everLive = false
    this._gapAt = null
    this._needSnapshot = true

    this._onOnline = () => this._handleOnline()
    this._onOffline = () => this._handleOffline()

    if (onStatus) this.on('status', onStatus)
    if (onSnapshot) this.on('snapshot', onSnapshot)
    if (onEvent) this.on('event', onEvent)
    if (onChange) this.on('change', onChange)
  }

  /** The cursor as the server spells it (decimal string), '' before the snapshot. */
  get cursor() {
    return this.applied === null ? '' : String(this.applied)
  }

  _setStatus(status) {
    if (this.status === status) return
    this.status = status
    this._emit('status', status)
  }

  // ---- lifecycle --------------------------------------------------------

  /** Load the snapshot and go live. Resolves once the first snapshot is loaded (or failed once). */
  start() {
    if (this._running) return this._startPromise
    this._running = true
    this._attempt = 0
    this._everLive = false
    if (this._hub) {
      // The hub loads the snapshot once its stream (with this room) is open.
      this._hubState = 'new'
      this._hubBuffer = []
      this._hub.attach(this)
      this._hubRefreshStatus()
      this._startPromise = Promise.resolve()
      return this._startPromise
    }
    this._needSnapshot = this.applied === null
    this._win?.addEventListener?.('online', this._onOnline)
    this._win?.addEventListener?.('offline', this._onOffline)
    if (!this._isOnline()) {
      this._setStatus('offline')
      this._startPromise = Promise.resolve()
      return this._startPromise
    }
    this._setStatus('connecting')
    this._startPromise = this._connect()
    return this._startPromise
  }

  /** Close the stream, cancel timers and listeners. The state stays readable. */
  stop() {
    if (this._hub) {
      const was = this._running
      this._running = false
      this._generation += 1
      this._hubState = 'new'
      this._hubBuffer = []
      if (was) this._hub.detach(this)
      this._setStatus('offline')
      return
    }
    this._running = false
    this._generation += 1
    this._closeStream()
    this._clearTimer()
    this._win?.removeEventListener?.('online', this._onOnline)
    this._win?.removeEventListener?.('offline', this._onOffline)
    this._setStatus('offline')
  }

  _clearTimer() {
    if (this._timer !== null) {
      clearTimeout(this._timer)
      this._timer = null
    }
  }

  _closeStream() {
    if (this._es) {
      const es = this._es
      this._es = null
      es.onopen = null
      es.onerror = null
      es.close()
    }
  }

  /** Delay before the next attempt: exponential from min, capped at max, full jitter in [d/2, d]. */
  nextDelay() {
    const { min, max } = this.backoff
    const d = Math.min(max, min * 2 ** Math.min(this._attempt, 20))
    this._attempt += 1
    return Math.round(d / 2 + (this._random() * d) / 2)
  }

  _scheduleReconnect() {
    if (!this._running) return
    this._closeStream()
    this._clearTimer()
    if (!this._isOnline()) {
      this._setStatus('offline')
      return
    }
    this._setStatus(this._everLive ? 'reconnecting' : 'connecting')
    // After several failed opens in a row, reload the snapshot first: it
    // probes the server, and recovers when our cursor is no longer valid
    // there (e.g. a rebuilt database answers 400 to a cursor ahead of it).
    if (this._attempt >= 4) this._needSnapshot = true
    const delay = this.nextDelay()
    const gen = ++this._generation
    this._timer = setTimeout(() => {
      this._timer = null
      if (gen === this._generation && this._running) this._connect()
    }, delay)
  }

  async _connect() {
    const gen = ++this._generation
    if (this._needSnapshot) {
      try {
        await this._loadSnapshot(gen)
      } catch (err) {
        if (gen !== this._generation || !this._running) return
        this._emit('error', err)
        this._scheduleReconnect()
        return
      }
      if (gen !== this._generation || !this._running) return
    }
    try {
      const refresh = this._refreshToken
      this._refreshToken = false
      this._token = await (refresh ? this._tokens.refresh() : this._tokens.get())
    } catch (err) {
      if (gen !== this._generation || !this._running) return
      this._emit('error', new RoomFeedError(`token: ${err?.message ?? err}`, { code: 'token_error', cause: err }))
      this._scheduleReconnect()
      return
    }
    if (gen !== this._generation || !this._running) return
    this._open(gen)
  }

  async _loadSnapshot(gen) {
    const { body } = await this._request('GET', `/elements`)
    if (gen !== this._generation || !this._running) return
    const cursor = parseSeq(body.cursor) ?? 0
    const heldSeq = this._elementSeq
    const held = this.elements
    this.elements = new Map()
    this._elementSeq = new Map()
    for (const el of body.elements ?? []) {
      this.elements.set(el.id, el)
      this._elementSeq.set(el.id, cursor)
    }
    // A write answer newer than this snapshot (it raced the GET) stays: the
    // stream from `cursor` will bring the same change again and skip it.
    for (const [id, seq] of heldSeq) {
      if (seq <= cursor) continue
      this._elementSeq.set(id, seq)
      if (held.has(id)) this.elements.set(id, held.get(id))
      else this.elements.delete(id)
    }
    this.applied = cursor
    this._ownOps.clear() // only marks events as own; per-element seqs keep applies exact
    this._needSnapshot = false
    this._gapAt = null
    this._emit('snapshot', { cursor: this.cursor, elements: [...this.elements.values()] })
  }

  _open(gen) {
    this._closeStream()
    let url = `${this.baseUrl}/rooms/${encodeURIComponent(this.room)}/events?last_event_id=${encodeURIComponent(this.cursor)}`
    if (this.client) url += `&client=${encodeURIComponent(this.client)}`
    if (this._token) url += `&access_token=${encodeURIComponent(this._token)}`
    let es
    try {
      es = new this._EventSource(url)
    } catch (err) {
      this._emit('error', err)
      this._scheduleReconnect()
      return
    }
    this._es = es
    const guard = (fn) => (ev) => {
      if (gen === this._generation && this._es === es) fn(ev)
    }
    es.onopen = guard(() => {
      this._attempt = 0
      this._everLive = true
      this._setStatus('live')
      if (this._presenceOn) this._reloadPresence()
    })
    // Any error ends this stream: we reopen it ourselves so the reopened
    // stream carries our cursor (the browser's own retry would not pass
    // ?last_event_id= and keeps going after fatal answers).
    es.onerror = guard(() => this._scheduleReconnect())
    const onMessage = guard((ev) => this._handleMessage(ev))
    for (const name of [...ELEMENT_EVENTS, 'message', ...this._messageNames]) {
      es.addEventListener(name, onMessage)
    }
    es.addEventListener('reset', guard((ev) => this._handleReset(ev)))
    es.addEventListener('auth_expired', guard(() => this._handleAuthExpired()))
    if (this._presenceOn) {
      const onPresence = guard((ev) => {
        try {
          this._handlePresence(JSON.parse(ev.data))
        } catch (err) {
          this._emit('error', new RoomFeedError(`bad presence data: ${err.message}`, { code: 'bad_event' }))
        }
      })
      for (const name of PRESENCE_EVENTS) es.addEventListener(name, onPresence)
    }
  }

  _handleAuthExpired() {
    // The server ended the stream at the token's expiry: fetch a fresh
    // token and resume from our cursor at once (the cursor is still good).
    this._emit('error', new RoomFeedError('feed token expired', { code: 'auth_expired' }))
    this._closeStream()
    this._refreshToken = true
    this._connect()
  }

  _handleReset(ev) {
    let info = {}
    try {
      info = JSON.parse(ev.data)
    } catch {
      /* a reset without data still means: reload */
    }
    this._emit('error', new RoomFeedError(`feed reset (${info.reason ?? 'unknown'})`, { code: 'reset' }))
    // Reload the snapshot and resume from its cursor on a fresh stream.
    this._closeStream()
    this._needSnapshot = true
    this._connect()
  }

  _handleMessage(ev) {
    let payload
    try {
      payload = JSON.parse(ev.data)
    } catch (err) {
      this._emit('error', new RoomFeedError(`bad event data: ${err.message}`, { code: 'bad_event' }))
      return
    }
    this._applyPayload(payload, ev.type, parseSeq(payload.id ?? ev.lastEventId), false)
  }

  /**
   * Apply one feed event. acceptGaps: the stream is known to be gap-free
   * for this room (the multiplexed feed), so a seq jump means events under
   * names nobody listens to went by; accept it instead of reopening.
   */
  _applyPayload(payload, evType, seq, acceptGaps) {
    if (seq === null) {
      // Not a feed event (no id): deliver, but it cannot move the cursor.
      this._emit('event', { ...payload, type: payload.type ?? evType, own: false })
      return
    }
    if (seq <= this.applied) return // duplicate or already in the snapshot
    if (seq > this.applied + 1 && !acceptGaps) {
      // A hole: events in between were lost, or carry a name we do not
      // listen to. Reopen from our cursor once; if the fresh stream starts
      // with the same hole, the server has nothing in between for us.
      if (this._gapAt !== this.applied) {
        this._gapAt = this.applied
        this._emit('error', new RoomFeedError(`gap in feed: have ${this.applied}, got ${seq}`, { code: 'gap' }))
        this._closeStream()
        this._open(++this._generation)
        return
      }
    }
    this._gapAt = null
    this.applied = seq
    const type = payload.type ?? evType
    const own = payload.op_id ? this._ownOps.delete(payload.op_id) : false
    const event = { ...payload, seq, type, own }
    if (ELEMENT_EVENTS.includes(type) && payload.element) {
      this._applyElement(payload.element, type === 'element.deleted', seq, own, 'event')
    } else {
      this._emit('message', event)
    }
    this._emit('event', event)
  }

  /** Apply a change to the confirmed state if seq is newer than what we hold for that id. */
  _applyElement(element, deleted, seq, own, source) {
    const id = element.id
    const held = this._elementSeq.get(id)
    if (held !== undefined && seq !== null && seq <= held) return false
    if (seq !== null) this._elementSeq.set(id, seq)
    if (deleted) this.elements.delete(id)
    else this.elements.set(id, element)
    this._emit('change', { id, element: deleted ? null : element, seq, own, source })
    return true
  }

  // ---- presence -------------------------------------------------------------

  _emitPeople() {
    this._emit('presence', [...this.people].sort())
  }

  _handlePresence(payload) {
    if (!payload || typeof payload.person !== 'string') return
    this._presenceBuffer?.push(payload)
    this._applyPresence(payload)
    this._emitPeople()
  }

  _applyPresence({ type, person }) {
    if (type === 'presence.joined') this.people.add(person)
    else if (type === 'presence.left') this.people.delete(person)
  }

  /**
   * Load who is here now. Presence events that arrive meanwhile are applied
   * at once and again on top of the answer, in order: the list ends right
   * whichever side of the GET they happened on (joins and leaves are
   * idempotent set operations).
   */
  async _reloadPresence() {
    const epoch = ++this._presenceEpoch
    this._presenceBuffer = []
    let people = null
    try {
      const { body } = await this._request('GET', '/presence')
      people = Array.isArray(body.people) ? body.people : []
    } catch (err) {
      if (epoch === this._presenceEpoch) this._emit('error', err)
    }
    if (epoch !== this._presenceEpoch) return
    const seen = this._presenceBuffer ?? []
    this._presenceBuffer = null
    if (people) {
      this.people = new Set(people)
      for (const p of seen) this._applyPresence(p)
    }
    this._emitPeople()
  }

  // ---- hub mode (driven by FeedHub) -------------------------------------------

  /** The room's status under the hub: the hub's, but 'live' only once this room is exact. */
  _hubRefreshStatus() {
    if (!this._running) return
    const hs = this._hub.status
    if (hs === 'live' && this._hubState !== 'ready') this._setStatus(this._everLive ? 'reconnecting' : 'connecting')
    else this._setStatus(hs)
    if (this.status === 'live') this._everLive = true
  }

  /**
   * The hub's stream (with this room) is open: load the snapshot, buffering
   * this room's events meanwhile. Rejects when the snapshot cannot be loaded
   * (the room stays 'loading' and keeps buffering; the hub retries).
   */
  async _hubLoad() {
    if (!this._running || this._hubState === 'ready') return
    if (this._hubState === 'new') {
      this._hubState = 'loading'
      this._hubBuffer = []
    }
    const gen = this._generation
    this._hubRefreshStatus()
    await this._loadSnapshot(gen)
    if (gen !== this._generation || !this._running || this._hubState !== 'loading') return
    const buffered = this._hubBuffer
    this._hubBuffer = []
    this._hubState = 'ready'
    // The snapshot was read after the stream opened, so the buffered events
    // continue it without a hole: skip those it already holds, apply the rest.
    for (const payload of buffered) this._applyPayload(payload, payload.type, parseSeq(payload.id), true)
    this._hubRefreshStatus()
  }

  /** A feed event for this room from the hub's stream. */
  _hubEvent(payload) {
    if (!this._running) return
    if (this._hubState === 'loading') this._hubBuffer.push(payload)
    else if (this._hubState === 'ready') this._applyPayload(payload, payload.type, parseSeq(payload.id), true)
    // 'new': not on this stream yet, or its place was lost; the next snapshot holds it
  }

  /** The hub lost this room's place (reset, repeated failures, a new stream): snapshot again. */
  _hubInvalidate() {
    this._generation += 1
    this._hubState = 'new'
    this._hubBuffer = []
    this._hubRefreshStatus()
  }

  // ---- online / offline ---------------------------------------------------

  _handleOffline() {
    if (!this._running) return
    this._generation += 1
    this._closeStream()
    this._clearTimer()
    this._setStatus('offline')
  }

  _handleOnline() {
    if (!this._running) return
    this._clearTimer()
    this._attempt = 0
    this._setStatus(this._everLive ? 'reconnecting' : 'connecting')
    this._connect()
  }

  // ---- writes ---------------------------------------------------------------

  /** One HTTP request to the room; resolves to { body, headers, status } or throws RoomFeedError. */
  async _request(method, path, { body, headers = {}, opId } = {}, retried = false) {
    const h = { Accept: 'application/json', ...headers }
    if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json'
    if (opId) h['Op-ID'] = opId
    let token
    try {
      token = await (retried ? this._tokens.refresh() : this._tokens.get())
    } catch (err) {
      throw new RoomFeedError(`token: ${err?.message ?? err}`, { code: 'token_error', cause: err })
    }
    if (token) h.Authorization = `Bearer ${token}`
    let res
    try {
      res = await this._fetch(`${this.baseUrl}/rooms/${encodeURIComponent(this.room)}${path}`, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      })
    } catch (err) {
      throw new RoomFeedError(`network error: ${err?.message ?? err}`, { cause: err })
    }
    let data = null
    let text = ''
    try {
      text = await res.text()
    } catch (err) {
      throw new RoomFeedError(`network error: ${err?.message ?? err}`, { cause: err })
    }
    if (text) {
      try {
        data = JSON.parse(text)
      } catch {
        data = null
      }
    }
    if (res.status === 401 && token && !retried) {
      // Expired or revoked: one retry with a fresh token.
      return this._request(method, path, { body, headers, opId }, true)
    }
    if (!res.ok) {
      const e = data?.error ?? {}
      throw new RoomFeedError(e.message || `HTTP ${res.status}`, {
        status: res.status,
        code: e.code || `http_${res.status}`,
      })
    }
    return { body: data ?? {}, headers: res.headers, status: res.status }
  }

  async _write(method, path, { body, headers, element: fallback, deleted = false } = {}) {
    const opId = newOpId()
    this._ownOps.add(opId)
    let res
    try {
      res = await this._request(method, path, { body, headers, opId })
    } catch (err) {
      this._ownOps.delete(opId)
      throw err
    }
    const seq = parseSeq(res.headers?.get?.('Event-ID'))
    const element = res.body && res.body.id ? res.body : fallback
    if (seq !== null && this.applied !== null && seq <= this.applied) {
      this._ownOps.delete(opId) // its event already went by
    }
    if (element?.id) this._applyElement(element, deleted, seq, true, 'write')
    return { element, seq, opId, status: res.status }
  }

  /** Create or replace an element. opts.ifMatch: version; opts.ifNoneMatch: true = create only. */
  put(id, { kind, data }, { ifMatch, ifNoneMatch } = {}) {
    const headers = {}
    if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`
    if (ifNoneMatch) headers['If-None-Match'] = '*'
    return this._write('PUT', `/elements/${encodeURIComponent(id)}`, { body: { kind, data }, headers })
  }

  /** RFC 7386 merge patch of an element's data (null removes a field). */
  patch(id, dataPatch, { ifMatch } = {}) {
    const headers = { 'Content-Type': 'application/merge-patch+json' }
    if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`
    return this._write('PATCH', `/elements/${encodeURIComponent(id)}`, { body: dataPatch, headers })
  }

  /** Delete an element. */
  delete(id, { ifMatch } = {}) {
    const headers = {}
    if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`
    const known = this.elements.get(id)
    return this._write('DELETE', `/elements/${encodeURIComponent(id)}`, {
      headers,
      element: { id, kind: known?.kind, version: known?.version },
      deleted: true,
    })
  }

  /** Create an element with a server-made id. */
  create({ kind, data }) {
    return this._write('POST', `/elements`, { body: { kind, data } })
  }

  /** Send a custom event to everyone in the room. */
  async message(event, data) {
    const opId = newOpId()
    this._ownOps.add(opId)
    try {
      const res = await this._request('POST', '/messages', { body: { event, data }, opId })
      return { message: res.body, seq: parseSeq(res.headers?.get?.('Event-ID')), opId }
    } catch (err) {
      this._ownOps.delete(opId)
      throw err
    }
  }
}

/** RFC 7386 JSON merge patch. Returns a new value; target is not modified. */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch
  const out = target && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

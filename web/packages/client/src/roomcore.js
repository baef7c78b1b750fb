// RoomCore: what a client of one roomfeed room holds, whichever stream
// carries the room's events. Each mode is its own subclass:
//   - RoomFeed (roomfeed.js): the room's own EventSource, backoff,
//     online/offline, token refresh;
//   - HubRoom (hubroom.js): one room on a FeedHub's shared stream, driven by
//     the hub (snapshot after the open, buffering while it loads, reset).
//
// RoomCore keeps the confirmed server state of the room in `elements` and the
// highest applied seq in `applied`, loads snapshots, applies feed events
// exactly once by seq, keeps `people` (presence) and sends writes with an
// Op-ID:
// - An event with seq <= applied is skipped (a duplicate, a replay, or already
//   in the snapshot). One above applied is applied once the mode admits it
//   (_admit(seq)); an event without a seq is delivered but moves no cursor.
// - Every element remembers the seq of the state held, so a write's answer
//   (`Event-ID`) and the feed's echo of the same write (`op_id`) are applied
//   once, in whatever order they come, and an older event never rolls back a
//   newer answer. A snapshot keeps the write answers newer than itself.
// - Presence events that arrive while GET /presence is in flight are applied
//   at once and again on top of its answer.
//
// Events: 'status' (connecting|live|reconnecting|offline|error), 'snapshot',
// 'change' ({ id, element, seq, own, source }; element === null: deleted),
// 'event' (every applied feed event, including custom messages), 'message'
// (custom messages only), 'signal' (ephemeral events without an id, e.g.
// drafts: { room, type, data, person, at }), 'presence' (the people in the
// room, a sorted array), 'problem' (why the feed cannot be followed, in
// http.js's terms: { status, code, message } or null once it works again),
// 'error' (diagnostics; the client recovers on its own).
//
// Status 'error' means the server refuses the feed for good as far as the
// client can tell (401 after a token refresh, 403, 404): it keeps retrying
// at its slowest pace, and 'problem' says why.
//
// A subclass implements its mode in three methods: _begin() (called by
// start(); returns the promise start() returns), _end(wasRunning) (called by
// stop()) and _admit(seq) (whether an event above applied + 1 is applied now).
// Async work started for one `_generation` is dropped when it changed (every
// stop() bumps it) or the room was stopped: see _isCurrent(gen).

import { Emitter } from './emitter.js'
import { toTokenSource } from './token.js'
import { RoomFeedError, defaultBaseUrl, roomRequest } from './http.js'

export { RoomFeedError, defaultBaseUrl }

export const ELEMENT_EVENTS = ['element.created', 'element.updated', 'element.deleted']
export const PRESENCE_EVENTS = ['presence.joined', 'presence.left']

let opCounter = 0
/** A unique token for the Op-ID header. */
export function newOpId() {
  opCounter += 1
  const rnd = globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2)
  return `${rnd}-${opCounter}`
}

/**
 * A feed refused for good as far as a client can tell: unauthorized (after a
 * refresh), forbidden, not found, or no EventSource to open it with.
 */
export function isFatalProblem(problem) {
  return !!problem && ([401, 403, 404].includes(problem.status) || problem.code === 'no_event_source' || problem.code === 'not_a_feed')
}

/**
 * Record a connection owner's problem (why it cannot follow now: { status,
 * code, message }, or null), emitting 'problem' when it changed. RoomCore
 * and FeedHub both own a connection.
 */
export function setProblem(owner, problem) {
  const next = problem ? { status: problem.status ?? 0, code: problem.code ?? '', message: problem.message ?? '' } : null
  const same = JSON.stringify(next) === JSON.stringify(owner.problem)
  owner.problem = next
  if (!same) owner._emit('problem', next)
}

/** A connection owner's status while not live: 'error' while refused for good, else 'reconnecting' once it was live. */
export function waitingStatus(owner) {
  if (isFatalProblem(owner.problem)) return 'error'
  return owner._everLive ? 'reconnecting' : 'connecting'
}

/** Delay before reconnect attempt n: exponential from min, capped at max, jittered in [d/2, d]. */
export function backoffDelay({ min, max }, attempt, random) {
  const d = Math.min(max, min * 2 ** Math.min(attempt, 20))
  return Math.round(d / 2 + (random() * d) / 2)
}

export function parseSeq(value) {
  if (value === undefined || value === null || value === '') return null
  const s = String(value).replace(/-0$/, '') // "42-0" (Redis id) is accepted too
  if (!/^\d+$/.test(s)) return null
  return Number(s)
}

/** @extends {Emitter<import('./types.js').RoomEvents>} */
export class RoomCore extends Emitter {
  /**
   * @param {object} opts
   * @param {string} opts.room room id
   * @param {string} [opts.baseUrl] server origin ('' = same origin)
   * @param {typeof fetch} [opts.fetch]
   * @param {string[]} [opts.messages] custom event names to listen for
   * @param {string|Function|{get: Function, refresh: Function}|null} [opts.token] the JWT, or where to
   *   get it (see token.js); default: none (the server's open development mode)
   * @param {boolean} [opts.presence] keep `people` (GET /presence on every open + live events)
   * @param {(status: string) => void} [opts.onStatus]
   * @param {(snapshot: any) => void} [opts.onSnapshot]
   * @param {(event: any) => void} [opts.onEvent]
   * @param {(change: any) => void} [opts.onChange]
   */
  constructor({
    room,
    baseUrl = defaultBaseUrl(),
    fetch = globalThis.fetch?.bind(globalThis),
    messages = [],
    token,
    presence = false,
    onStatus,
    onSnapshot,
    onEvent,
    onChange,
  } = {}) {
    super()
    if (!room) throw new Error(`${new.target.name}: room is required`)
    this.room = room
    this.baseUrl = String(baseUrl).replace(/\/+$/, '')
    this._fetch = fetch
    this._messageNames = messages
    this._tokens = toTokenSource(token)
    this._presenceOn = presence

    /** The people in the room now (presence), kept while presence is on. @type {Set<string>} */
    this.people = new Set()
    this._presenceEpoch = 0
    this._presenceBuffer = null // presence events seen while GET /presence is in flight

    /** Confirmed server state: id -> element. @type {Map<string, import('./types.js').RoomElement>} */
    this.elements = new Map()
    /** Highest applied feed seq (number); null before the snapshot. @type {number | null} */
    this.applied = null
    /** @type {import('./types.js').Status} */
    this.status = 'offline'
    /** Why the feed cannot be followed now, or null (see 'problem'). @type {import('./types.js').Problem | null} */
    this.problem = null

    this._elementSeq = new Map() // id -> seq of the state we hold (incl. tombstones)
    this._ownOps = new Set()
    this._running = false
    this._generation = 0 // bumps on every stop and every new attempt; stale callbacks compare it
    this._everLive = false

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
    if (status === 'live') this._everLive = true
    if (this.status === status) return
    this.status = status
    this._emit('status', status)
  }

  /** The status while not live: 'error' while refused for good, else 'reconnecting' once live since start(). */
  _waitingStatus() {
    return waitingStatus(this)
  }

  /** Why the feed cannot be followed now ({ status, code, message }), or null. */
  _setProblem(problem) {
    setProblem(this, problem)
  }

  /** Async work of generation gen is still wanted. */
  _isCurrent(gen) {
    return gen === this._generation && this._running
  }

  // ---- lifecycle --------------------------------------------------------

  /** Follow the room and go live; see the subclass for when the promise resolves. */
  start() {
    if (this._running) return this._startPromise
    this._running = true
    this._everLive = false
    this._startPromise = this._begin()
    return this._startPromise
  }

  /** Stop following the room. The state stays readable. */
  stop() {
    const was = this._running
    this._running = false
    this._generation += 1
    this._end(was)
    this._setStatus('offline')
  }

  // ---- snapshot and events ----------------------------------------------

  /**
   * Load the snapshot and make it the confirmed state. Resolves to false
   * when generation gen went stale meanwhile (nothing changed), else true.
   */
  async _loadSnapshot(gen) {
    const { body } = await this._request('GET', `/elements`)
    if (!this._isCurrent(gen)) return false
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
    this._emit('snapshot', { cursor: this.cursor, elements: [...this.elements.values()] })
    return true
  }

  /** Apply one feed event (seq: its seq in this room, null if it has none) exactly once. */
  _applyPayload(payload, evType, seq) {
    if (seq === null) {
      // Not a feed event (no id): a signal (ephemeral, never recorded);
      // delivered, but it cannot move the cursor.
      const event = { ...payload, type: payload.type ?? evType, own: false }
      this._emit('signal', event)
      this._emit('event', event)
      return
    }
    if (seq <= this.applied) return // duplicate or already in the snapshot
    if (seq > this.applied + 1 && !this._admit(seq)) return
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

  /** A presence event ({ type, person }) from the stream: never moves a cursor. */
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

  // ---- requests and writes --------------------------------------------------

  /**
   * Where requests of this room go: baseUrl, fetch, token source, room, and
   * the client name its writes carry (http.js roomRequest).
   * @returns {import('./http.js').Endpoint}
   */
  get endpoint() {
    return { baseUrl: this.baseUrl, fetch: this._fetch, tokens: this._tokens, room: this.room, client: this.clientName }
  }

  /** One HTTP request to the room; resolves to { body, headers, status } or throws RoomFeedError. */
  /** @private */
  _request(method, path, { body, headers = {}, opId, query } = {}) {
    const h = opId ? { ...headers, 'Op-ID': opId } : headers
    return roomRequest(this.endpoint, method, path, { body, headers: h, query })
  }

  /**
   * A write's answer learnt elsewhere (the outbox, another tab): applied to
   * the confirmed state once, by the element's seq like any feed event.
   */
  applyAnswer({ element, seq = null, deleted = false, key }) {
    if (!element?.id) return false
    if (key && seq !== null && (this.applied === null || seq > this.applied)) this._ownOps.add(key)
    return this._applyElement(element, deleted, seq, true, 'write')
  }

  /** The display name sent with writes, messages and signals (?client=: the actor the server records in open mode). */
  get clientName() {
    return ''
  }

  /**
   * Send an ephemeral signal to everyone following the room now (POST
   * /signals, 202): never recorded, delivered without an id. Resolves to the
   * signal; throws RoomFeedError (429 when sent too fast).
   */
  async signal(event, data) {
    const res = await this._request('POST', '/signals', { body: { event, data } })
    return res.body
  }

  /** @private */
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

  /**
   * Create or replace an element. opts.ifMatch: version; opts.ifNoneMatch: true = create only.
   * @param {string} id
   * @param {{ kind: string, data: any }} element
   * @param {{ ifMatch?: number|null, ifNoneMatch?: boolean }} [opts]
   */
  put(id, { kind, data }, { ifMatch, ifNoneMatch } = {}) {
    const headers = {}
    if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`
    if (ifNoneMatch) headers['If-None-Match'] = '*'
    return this._write('PUT', `/elements/${encodeURIComponent(id)}`, { body: { kind, data }, headers })
  }

  /**
   * RFC 7386 merge patch of an element's data (null removes a field).
   * @param {string} id
   * @param {Record<string, any>} dataPatch
   * @param {{ ifMatch?: number|null }} [opts]
   */
  patch(id, dataPatch, { ifMatch } = {}) {
    const headers = { 'Content-Type': 'application/merge-patch+json' }
    if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`
    return this._write('PATCH', `/elements/${encodeURIComponent(id)}`, { body: dataPatch, headers })
  }

  /**
   * Delete an element.
   * @param {string} id
   * @param {{ ifMatch?: number|null }} [opts]
   */
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

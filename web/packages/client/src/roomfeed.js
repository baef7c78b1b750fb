// RoomFeed: a framework-free client for one roomfeed room on its own stream.
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
// The state, the exactly-once apply, snapshots, presence and writes are
// RoomCore's (roomcore.js); RoomFeed adds its own stream: the EventSource,
// holes, backoff, online/offline, `reset` and `auth_expired`. For many rooms
// on one page, FeedHub (feedhub.js) carries them all on one multiplexed
// stream: hub.createFeed(room) makes a HubRoom with the same API.

import { ELEMENT_EVENTS, PRESENCE_EVENTS, RoomCore, RoomFeedError, isFatalProblem, parseSeq } from './roomcore.js'
import { probeStream } from './http.js'

export { RoomFeedError }

export class RoomFeed extends RoomCore {
  /**
   * @param {object} opts RoomCore's (room, baseUrl, fetch, messages, token, presence), and:
   * @param {typeof EventSource} [opts.EventSource]
   * @param {{min?: number, max?: number}} [opts.backoff] reconnect delays in ms
   * @param {EventTarget|null} [opts.window] source of online/offline events
   * @param {() => boolean} [opts.isOnline]
   * @param {() => number} [opts.random] jitter source (tests)
   * @param {string} [opts.client] display name sent as ?client= (presence); also turns presence on
   * @param {boolean} [opts.presence] keep `people`; default: on when client is set
   * @param {string[]} [opts.signals] signal names to listen to (ephemeral events, 'signal')
   */
  constructor({
    EventSource = globalThis.EventSource,
    backoff = {},
    window: win = typeof globalThis.addEventListener === 'function' ? globalThis : null,
    isOnline = () => globalThis.navigator?.onLine !== false,
    random = Math.random,
    client = '',
    presence,
    signals = [],
    ...core
  } = {}) {
    super({ ...core, presence: presence ?? !!client })
    this._signalNames = signals
    this._EventSource = EventSource
    this.backoff = { min: backoff.min ?? 500, max: backoff.max ?? 15000 }
    this._win = win
    this._isOnline = isOnline
    this._random = random
    this._token = null // the token of the current stream
    this._refreshToken = false
    this.client = client || ''

    this._es = null
    this._timer = null
    this._attempt = 0
    this._gapAt = null // applied when the last hole was met (the stream was reopened for it)
    this._needSnapshot = true

    this._onOnline = () => this._handleOnline()
    this._onOffline = () => this._handleOffline()
    this._authFailures = 0 // 401s in a row (the first one refreshes the token)
  }

  get clientName() {
    return this.client
  }

  // ---- lifecycle --------------------------------------------------------

  /** start(): load the snapshot and go live. Resolves once the first snapshot is loaded (or failed once). */
  _begin() {
    this._attempt = 0
    this._needSnapshot = this.applied === null
    this._win?.addEventListener?.('online', this._onOnline)
    this._win?.addEventListener?.('offline', this._onOffline)
    if (!this._isOnline()) {
      this._setStatus('offline')
      return Promise.resolve()
    }
    this._setStatus('connecting')
    return this._connect()
  }

  /** stop(): close the stream, cancel timers and listeners. */
  _end() {
    this._closeStream()
    this._clearTimer()
    this._win?.removeEventListener?.('online', this._onOnline)
    this._win?.removeEventListener?.('offline', this._onOffline)
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
    this._setStatus(this._waitingStatus())
    // After several failed opens in a row, reload the snapshot first: it
    // recovers from a cursor the server no longer accepts, whatever is wrong
    // there (e.g. a rebuilt database answers 400 to a cursor ahead of it).
    if (this._attempt >= 4) this._needSnapshot = true
    // Refused for good: try again at the slowest pace only.
    const delay = isFatalProblem(this.problem) ? this.backoff.max : this.nextDelay()
    const gen = ++this._generation
    this._timer = setTimeout(() => {
      this._timer = null
      if (this._isCurrent(gen)) this._connect()
    }, delay)
  }

  async _connect() {
    const gen = ++this._generation
    if (this._needSnapshot) {
      try {
        if (await this._loadSnapshot(gen)) {
          this._needSnapshot = false
          this._gapAt = null
        }
      } catch (err) {
        if (!this._isCurrent(gen)) return
        this._emit('error', err)
        if (err?.status) this._setProblem(err)
        this._scheduleReconnect()
        return
      }
      if (!this._isCurrent(gen)) return
    }
    try {
      const refresh = this._refreshToken
      this._refreshToken = false
      this._token = await (refresh ? this._tokens.refresh() : this._tokens.get())
    } catch (err) {
      if (!this._isCurrent(gen)) return
      this._emit('error', new RoomFeedError(`token: ${err?.message ?? err}`, { code: 'token_error', cause: err }))
      this._scheduleReconnect()
      return
    }
    if (!this._isCurrent(gen)) return
    this._open(gen)
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
    let opened = false
    const guard = (fn) => (ev) => {
      if (gen === this._generation && this._es === es) fn(ev)
    }
    es.onopen = guard(() => {
      opened = true
      this._attempt = 0
      this._authFailures = 0
      this._setProblem(null)
      this._setStatus('live')
      if (this._presenceOn) this._reloadPresence()
    })
    // Any error ends this stream: we reopen it ourselves so the reopened
    // stream carries our cursor (the browser's own retry would not pass
    // ?last_event_id= and keeps going after fatal answers). A stream that
    // never opened is asked why (401, 403, 404, 503...).
    es.onerror = guard(() => {
      this._scheduleReconnect()
      if (!opened) this._probe(url.replace(/&client=[^&]*/, ''))
    })
    this._listen(es, guard)
  }

  /** Why the stream at url failed (see http.js probeStream); updates problem and status. */
  async _probe(url) {
    const gen = this._generation
    const problem = await probeStream(this._fetch, url)
    if (!this._running || this.status === 'live' || gen !== this._generation) return
    this._applyProbe(problem)
  }

  _applyProbe(problem) {
    if (!problem) return
    if (problem.status === 401 && this._authFailures++ === 0) {
      // Expired or revoked: the next attempt fetches a fresh token first.
      this._refreshToken = true
      return
    }
    if (problem.status === 400 && /cursor/.test(problem.code)) this._needSnapshot = true
    this._setProblem(problem)
    if (this.status !== 'offline') this._setStatus(this._waitingStatus())
  }

  /** Route the stream's named events; guard drops those of a stream no longer current. */
  _listen(es, guard) {
    const onMessage = guard((ev) => this._handleMessage(ev))
    for (const name of [...ELEMENT_EVENTS, 'message', ...this._messageNames]) {
      es.addEventListener(name, onMessage)
    }
    // Signals carry no id: the event's lastEventId is the stream's last id
    // (of an earlier event) and must not be taken for theirs.
    const onSignal = guard((ev) => this._handleMessage(ev, { signal: true }))
    for (const name of this._signalNames) es.addEventListener(name, onSignal)
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

  _handleMessage(ev, { signal = false } = {}) {
    let payload
    try {
      payload = JSON.parse(ev.data)
    } catch (err) {
      this._emit('error', new RoomFeedError(`bad event data: ${err.message}`, { code: 'bad_event' }))
      return
    }
    this._applyPayload(payload, ev.type, signal ? null : parseSeq(payload.id ?? ev.lastEventId))
  }

  /**
   * An event above applied + 1 is a hole: events in between were lost, or
   * carry a name we do not listen to. Reopen from our cursor once (false: not
   * applied); if the fresh stream starts with the same hole, the server has
   * nothing in between for us, and the event is applied.
   */
  _admit(seq) {
    if (this._gapAt !== this.applied) {
      this._gapAt = this.applied
      this._emit('error', new RoomFeedError(`gap in feed: have ${this.applied}, got ${seq}`, { code: 'gap' }))
      this._closeStream()
      this._open(++this._generation)
      return false
    }
    this._gapAt = null
    return true
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
    this._setStatus(this._waitingStatus())
    this._connect()
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

function containsNull(v) {
  if (v === null) return true
  if (Array.isArray(v)) return false // arrays are replaced whole by a merge patch: nulls inside are kept
  if (typeof v === 'object') return Object.values(v).some(containsNull)
  return false
}

/**
 * The RFC 7386 merge patch that turns before into after (objects: recursive,
 * keys gone become null; anything else replaced whole). undefined when they
 * are equal; null when no merge patch can say it (after holds a null inside
 * an object: send the whole data with PUT instead).
 */
export function diffMergePatch(before, after) {
  if (JSON.stringify(before) === JSON.stringify(after)) return undefined
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)
  if (!isObj(before) || !isObj(after)) return containsNull(after) && isObj(after) ? null : after
  const patch = {}
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (!(k in after)) {
      patch[k] = null
      continue
    }
    if (after[k] === null) return null
    if (!(k in before)) {
      if (containsNull(after[k])) return null
      patch[k] = after[k]
      continue
    }
    const d = diffMergePatch(before[k], after[k])
    if (d === null) return null
    if (d !== undefined) patch[k] = d
  }
  return patch
}

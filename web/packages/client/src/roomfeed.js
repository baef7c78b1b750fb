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

import { ELEMENT_EVENTS, PRESENCE_EVENTS, RoomCore, RoomFeedError, parseSeq } from './roomcore.js'
import { authExpired, clearTimer, closeStream, initReconnect, listenNetwork, nextDelay, openEventSource, probe, scheduleReconnect, streamClass, streamOpened, streamToken } from './reconnect.js'

export { RoomFeedError }

export class RoomFeed extends RoomCore {
  /**
   * @param {object} opts RoomCore's (room, baseUrl, fetch, messages, token, presence), and:
   * @param {any} [opts.EventSource] the EventSource class; default: globalThis.EventSource, else the `eventsource` package's
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
    initReconnect(this, { EventSource, backoff, window: win, isOnline, random })
    this._token = null // the token of the current stream
    this.client = client || ''

    this._gapAt = null // applied when the last hole was met (the stream was reopened for it)
    this._needSnapshot = true
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
    listenNetwork(this, true)
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
    listenNetwork(this, false)
  }

  _clearTimer() {
    clearTimer(this)
  }

  _closeStream() {
    closeStream(this)
  }

  /** Delay before the next attempt: exponential from min, capped at max, jittered in [d/2, d]. */
  nextDelay(attempt = this._attempt++) {
    return nextDelay(this, attempt)
  }

  // The hooks of reconnect.js (_isCurrent is RoomCore's).
  _active() {
    return this._running
  }

  /** Reload the snapshot first (after repeated failed opens). */
  _lostPlace() {
    this._needSnapshot = true
  }

  _scheduleReconnect() {
    scheduleReconnect(this)
  }

  async _connect() {
    const gen = ++this._generation
    if (!(await streamClass(this, gen))) return
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
    if (!(await streamToken(this, this._tokens, gen))) return
    this._open(gen)
  }

  _open(gen) {
    this._closeStream()
    let url = `${this.baseUrl}/rooms/${encodeURIComponent(this.room)}/events?last_event_id=${encodeURIComponent(this.cursor)}`
    if (this.client) url += `&client=${encodeURIComponent(this.client)}`
    if (this._token) url += `&access_token=${encodeURIComponent(this._token)}`
    const made = openEventSource(this, url, gen)
    if (!made) return
    const { es, guard } = made
    let opened = false
    es.onopen = guard(() => {
      opened = true
      streamOpened(this)
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
  _probe(url) {
    return probe(this, this._fetch, url)
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
    authExpired(this)
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

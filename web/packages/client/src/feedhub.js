// FeedHub: one multiplexed EventSource for every room a page follows.
//
// Browsers allow 6 HTTP/1.1 connections per origin, so one EventSource per
// room breaks down quickly. The hub owns ONE stream on
// `GET /events?room=a&room=b&...` and drives a HubRoom per room (made by
// hub.createFeed(room), see hubroom.js; same API as a RoomFeed); each room
// keeps its own snapshot, applied seq, elements, writes and presence, exactly
// as a RoomFeed does alone. The hub owns the stream (room set, composite
// cursor, backoff, online/offline, tokens, shared status) and routes events
// to the rooms; each HubRoom keeps its place on it (new, loading, ready).
//
//   const hub = new FeedHub({ client: 'alice' })
//   const a = hub.createFeed('w1'), b = hub.createFeed('chat')
//   a.on('change', ...); b.on('message', ...)
//   a.start(); b.start()       // one stream opens for both (room-set changes are debounced)
//   hub.on('status', ...)      // connecting | live | reconnecting | offline, shared
//   b.stop()                   // the stream reopens without 'chat'
//
// How each room stays exact on the shared stream:
// - (Re)open: `?last_event_id=a:42,b:7`, the composite cursor built from the
//   applied seq of every room that is exact ("ready"). Rooms not ready (new,
//   reset, or lost after repeated failures) are left out of the cursor, so the
//   server starts them live; once the stream is open they load their snapshot
//   (read after the open, so it is at or after where the stream started) while
//   their events are buffered, then apply the buffered events above the
//   snapshot's cursor.
// - Events are routed by the `room` in their data and applied by the room's
//   own seq (`id` in the data): seq <= applied is skipped. The server sends
//   each room in order without holes, so a seq jump means events under names
//   nobody listens to went by (EventSource cannot listen to every name); it
//   is accepted, never a reason to reopen.
// - `event: reset` names its room: only that room reloads its snapshot.
// - Presence events (no id) never touch a cursor; each open reloads
//   `GET /rooms/{room}/presence` for every room.
// - Any stream error closes the EventSource and reopens it with the latest
//   cursors after a capped, jittered backoff; after four failures in a row
//   every room reloads its snapshot (recovers a cursor the server no longer
//   accepts). offline/online pause and resume at once; auth_expired fetches a
//   fresh token and reopens at once.

import { ELEMENT_EVENTS, PRESENCE_EVENTS, RoomFeedError, defaultBaseUrl, setProblem, waitingStatus } from './roomcore.js'
import { authExpired, clearTimer, closeStream, initReconnect, listenNetwork, nextDelay, openEventSource, probe, scheduleReconnect, streamClass, streamOpened, streamToken } from './reconnect.js'
import { HubRoom } from './hubroom.js'
import { Emitter } from './emitter.js'
import { toTokenSource } from './token.js'

/** "a:42,b:7" from [[room, seq], ...]. */
export function formatCompositeCursor(entries) {
  return entries.map(([room, seq]) => `${room}:${seq}`).join(',')
}

/** { a: 42, b: 7 } from "a:42,b:7"; null when malformed. */
export function parseCompositeCursor(text) {
  const out = {}
  if (!text) return out
  for (const part of String(text).split(',')) {
    const i = part.lastIndexOf(':')
    if (i <= 0) return null
    const seq = part.slice(i + 1).replace(/-0$/, '')
    if (!/^\d+$/.test(seq)) return null
    out[part.slice(0, i)] = Number(seq)
  }
  return out
}

/** @extends {Emitter<import('./types.js').HubEvents>} */
export class FeedHub extends Emitter {
  /**
   * @param {object} [opts]
   * @param {string} [opts.baseUrl] server origin ('' = same origin)
   * @param {any} [opts.EventSource] the EventSource class; default: globalThis.EventSource, else the `eventsource` package's
   * @param {typeof fetch} [opts.fetch]
   * @param {{min?: number, max?: number}} [opts.backoff] reconnect delays in ms
   * @param {EventTarget|null} [opts.window] source of online/offline events
   * @param {() => boolean} [opts.isOnline]
   * @param {() => number} [opts.random] jitter source (tests)
   * @param {*} [opts.token] as for RoomFeed (token.js)
   * @param {string} [opts.client] display name sent as ?client= (presence)
   * @param {number} [opts.debounceMs] room-set changes within this window open one stream
   * @param {number} [opts.maxRooms] rooms per stream (the server's limit, default 32)
   * @param {number} [opts.maxBuffer] events buffered per loading room before it starts over
   */
  constructor({
    baseUrl = defaultBaseUrl(),
    EventSource = globalThis.EventSource,
    fetch = globalThis.fetch?.bind(globalThis),
    backoff = {},
    window: win = typeof globalThis.addEventListener === 'function' ? globalThis : null,
    isOnline = () => globalThis.navigator?.onLine !== false,
    random = Math.random,
    token,
    client = '',
    debounceMs = 30,
    maxRooms = 32,
    maxBuffer = 5000,
  } = {}) {
    super()
    this.baseUrl = String(baseUrl).replace(/\/+$/, '')
    initReconnect(this, { EventSource, backoff, window: win, isOnline, random })
    this.fetch = fetch
    this.tokens = toTokenSource(token)
    this.client = client || ''
    this.debounceMs = debounceMs
    this.maxRooms = maxRooms
    this.maxBuffer = maxBuffer

    /** @type {import('./types.js').Status} */
    this.status = 'offline'
    /** @type {import('./types.js').Problem | null} Why the stream cannot be opened now ({ status, code, message }), or null; rooms show it as theirs. */
    this.problem = null
    this._authFailures = 0
    /** Rooms of the current stream, in the order of its URL. */
    this.streamRooms = []
    /** Streams opened so far (diagnostics, tests). */
    this.opened = 0

    this._feeds = new Map() // room -> HubRoom (attached)
    this._isOpen = false // the current EventSource has opened
    this._esNames = null // event names the current EventSource listens to
    this._streamKey = ''
    this._syncTimer = null // debounced room-set change
    this._generation = 0
    this._everLive = false
    this._token = null
    this._listening = false
    this._retries = new Map() // room -> timer of a snapshot retry
  }

  /** A HubRoom for room that shares this hub's stream (start() to follow it); opts as for RoomCore. */
  createFeed(room, opts = {}) {
    return new HubRoom({ baseUrl: this.baseUrl, fetch: this.fetch, token: this.tokens, ...opts, room, hub: this })
  }

  /** The rooms followed now. */
  get rooms() {
    return [...this._feeds.keys()]
  }

  /** The composite cursor a reopen would carry: every exact room at its applied seq. */
  get cursor() {
    return formatCompositeCursor(this._cursorEntries(this._desiredRooms()))
  }

  _setStatus(status) {
    if (this.status !== status) {
      this.status = status
      if (status === 'live') this._everLive = true
      this._emit('status', status)
    }
    for (const feed of this._feeds.values()) feed._refreshStatus()
  }

  _waitingStatus() {
    return waitingStatus(this)
  }

  _setProblem(problem) {
    setProblem(this, problem)
  }

  // ---- rooms ------------------------------------------------------------------

  /** Called by HubRoom.start(). */
  attach(feed) {
    const held = this._feeds.get(feed.room)
    if (held && held !== feed) throw new Error(`FeedHub: room ${feed.room} is already followed by another feed`)
    this._feeds.set(feed.room, feed)
    if (!this._listening) {
      this._listening = true
      listenNetwork(this, true)
    }
    this._scheduleSync()
  }

  /** Called by HubRoom.stop(). */
  detach(feed) {
    if (this._feeds.get(feed.room) !== feed) return
    this._feeds.delete(feed.room)
    this._clearRetry(feed.room)
    this._scheduleSync()
  }

  /** Change the display name (presence): the stream reopens under it. */
  setClient(name) {
    name = name || ''
    if (name === this.client) return
    this.client = name
    this._scheduleSync()
  }

  /** Stop every room and close the stream. */
  stop() {
    for (const feed of [...this._feeds.values()]) feed.stop()
    this._shutdown()
  }

  _desiredRooms() {
    return [...this._feeds.keys()].slice(0, this.maxRooms)
  }

  _cursorEntries(rooms) {
    const out = []
    for (const room of rooms) {
      const feed = this._feeds.get(room)
      if (feed && feed._state === 'ready' && feed.applied !== null) out.push([room, feed.applied])
    }
    return out
  }

  _scheduleSync() {
    if (this._syncTimer !== null) clearTimeout(this._syncTimer)
    this._syncTimer = setTimeout(() => {
      this._syncTimer = null
      this._sync()
    }, this.debounceMs)
  }

  /** Bring the stream in line with the followed rooms and the name. */
  _sync() {
    if (this._feeds.size === 0) {
      this._shutdown()
      return
    }
    if (this._feeds.size > this.maxRooms) {
      this._emit('error', new RoomFeedError(`following ${this._feeds.size} rooms; one stream carries ${this.maxRooms}`, { code: 'too_many_rooms' }))
    }
    if (!this._isOnline()) {
      this._setStatus('offline')
      return
    }
    if (this._timer !== null) return // a reconnect is scheduled; it opens with the rooms of that time
    const key = this._keyOf(this._desiredRooms())
    if (this._es && key === this._streamKey) {
      // Same rooms: a room re-attached to the open stream loads at once.
      this._listenTo(this._es, this._es._hubGuard)
      if (this._isOpen) {
        for (const room of this.streamRooms) {
          const feed = this._feeds.get(room)
          if (feed?._state !== 'new') continue
          this._loadRoom(room)
          if (feed._presenceOn) feed._reloadPresence()
        }
      }
      this._setStatus(this.status)
      return
    }
    this._connect()
  }

  _keyOf(rooms) {
    return `${rooms.join('&')}|${this.client}`
  }

  _shutdown() {
    this._generation += 1
    this._closeStream()
    this._clearTimer()
    if (this._syncTimer !== null) clearTimeout(this._syncTimer)
    this._syncTimer = null
    for (const room of [...this._retries.keys()]) this._clearRetry(room)
    if (this._listening) {
      this._listening = false
      listenNetwork(this, false)
    }
    this._attempt = 0
    this._everLive = false
    this._setProblem(null)
    this._setStatus('offline')
  }

  // ---- the stream ---------------------------------------------------------------

  _clearTimer() {
    clearTimer(this)
  }

  _clearRetry(room) {
    const t = this._retries.get(room)
    if (t !== undefined) clearTimeout(t)
    this._retries.delete(room)
  }

  _closeStream() {
    this._isOpen = false
    closeStream(this)
    for (const room of [...this._retries.keys()]) this._clearRetry(room)
  }

  /** Delay before the next attempt: exponential from min, capped at max, jittered in [d/2, d]. */
  nextDelay(attempt = this._attempt++) {
    return nextDelay(this, attempt)
  }

  // The hooks of reconnect.js.
  _active() {
    return this._feeds.size > 0
  }

  _isCurrent(gen) {
    return gen === this._generation
  }

  /** Every room reloads its snapshot (after repeated failed opens). */
  _lostPlace() {
    for (const feed of this._feeds.values()) feed._invalidate()
  }

  _scheduleReconnect() {
    scheduleReconnect(this)
  }

  async _connect() {
    const gen = ++this._generation
    this._clearTimer()
    if (this._feeds.size === 0) return
    if (this.status === 'offline') this._setStatus(this._waitingStatus())
    if (!(await streamClass(this, gen, [...this._feeds.values()])) || this._feeds.size === 0) return
    if (!(await streamToken(this, this.tokens, gen)) || this._feeds.size === 0) return
    this._openStream(gen)
  }

  _openStream(gen) {
    this._closeStream()
    const rooms = this._desiredRooms()
    // A room that is not exact yet has no place on this stream: it starts
    // live and loads its snapshot once the stream is open.
    for (const room of rooms) {
      const feed = this._feeds.get(room)
      if (feed._state !== 'ready') feed._invalidate()
    }
    const params = new URLSearchParams()
    for (const room of rooms) params.append('room', room)
    const cursor = formatCompositeCursor(this._cursorEntries(rooms))
    if (cursor) params.set('last_event_id', cursor)
    if (this.client) params.set('client', this.client)
    if (this._token) params.set('access_token', this._token)
    const url = `${this.baseUrl}/events?${params}`
    const made = openEventSource(this, url, gen)
    if (!made) return
    const { es, guard } = made
    this.opened += 1
    this._streamKey = this._keyOf(rooms)
    this.streamRooms = rooms
    es._hubGuard = guard
    es.onopen = guard(() => {
      this._isOpen = true
      streamOpened(this)
      this._emit('open', { url, rooms, cursor })
      for (const room of rooms) {
        this._loadRoom(room)
        const feed = this._feeds.get(room)
        if (feed?._presenceOn) feed._reloadPresence()
      }
    })
    // Any error ends this stream: we reopen it ourselves so that it carries
    // the cursors of rooms that were reset or added meanwhile. A stream that
    // never opened is asked why (401, 403, 404, 503...).
    es.onerror = guard(() => {
      const opened = this._isOpen
      this._scheduleReconnect()
      if (!opened) this._probe(url.replace(/&client=[^&]*/, ''))
    })
    this._esNames = new Set()
    this._listenTo(es, guard)
    es.addEventListener('reset', guard((ev) => this._handleReset(ev)))
    es.addEventListener('auth_expired', guard(() => this._handleAuthExpired()))
    const onPresence = guard((ev) => this._handlePresence(ev))
    for (const name of PRESENCE_EVENTS) es.addEventListener(name, onPresence)
    // The room set may have changed while the token was fetched.
    if (this._keyOf(this._desiredRooms()) !== this._streamKey) this._scheduleSync()
  }

  /** Why the stream at url failed (http.js probeStream): updates problem and status. */
  _probe(url) {
    return probe(this, this.fetch, url)
  }

  /** Listen to the element events and every custom message name of the followed rooms. */
  _listenTo(es, guard) {
    if (!es || !guard) return
    const onMessage = guard((ev) => this._handleMessage(ev))
    const names = new Set([...ELEMENT_EVENTS, 'message'])
    for (const feed of this._feeds.values()) {
      for (const n of feed._messageNames ?? []) names.add(n)
      for (const n of feed._signalNames ?? []) names.add(n)
    }
    for (const name of names) {
      if (this._esNames.has(name)) continue
      this._esNames.add(name)
      es.addEventListener(name, onMessage)
    }
  }

  /** Load the snapshot of a room on the open stream that is not exact; retry with backoff. */
  _loadRoom(room, attempt = 0) {
    const feed = this._feeds.get(room)
    if (!feed || feed._state === 'ready' || this._retries.has(room)) return
    const gen = this._generation
    if (feed._state === 'loading' && attempt === 0) return // already in flight
    feed._load().catch((err) => {
      if (gen !== this._generation || this._feeds.get(room) !== feed || feed._state !== 'loading') return
      feed._emit('error', err)
      feed._setLoadProblem(err)
      if (feed._buffer.length > this.maxBuffer) {
        // Too far behind to catch up from the buffer: start this room over.
        feed._invalidate()
        this._closeStream()
        this._connect()
        return
      }
      const t = setTimeout(() => {
        this._retries.delete(room)
        if (gen === this._generation) this._loadRoom(room, attempt + 1)
      }, this.nextDelay(attempt))
      this._retries.set(room, t)
    })
  }

  _parse(ev) {
    try {
      return JSON.parse(ev.data)
    } catch (err) {
      this._emit('error', new RoomFeedError(`bad event data: ${err.message}`, { code: 'bad_event' }))
      return null
    }
  }

  _handleMessage(ev) {
    const payload = this._parse(ev)
    if (!payload || typeof payload !== 'object') return
    const feed = this._feeds.get(payload.room)
    if (!feed) return
    if (payload.type === undefined) payload.type = ev.type
    feed._receive(payload)
  }

  _handlePresence(ev) {
    const payload = this._parse(ev)
    const feed = payload && this._feeds.get(payload.room)
    if (!feed) return
    if (payload.type === undefined) payload.type = ev.type
    feed._handlePresence(payload) // never moves a cursor
  }

  _handleReset(ev) {
    const info = this._parse(ev) ?? {}
    const feed = this._feeds.get(info.room)
    if (!feed) {
      // A reset without a room we know: reload them all.
      for (const f of this._feeds.values()) f._invalidate()
      this._closeStream()
      this._connect()
      return
    }
    feed._emit('error', new RoomFeedError(`feed reset (${info.reason ?? 'unknown'})`, { code: 'reset' }))
    // Only this room reloads; events after the reset are buffered meanwhile.
    this._clearRetry(feed.room)
    feed._invalidate()
    if (this._isOpen) this._loadRoom(feed.room)
  }

  _handleAuthExpired() {
    authExpired(this)
  }
}

// Outbox: every write of a page goes here first, is persisted with its
// Idempotency-Key, and is sent from here, in order per room, until the server
// acknowledges it or refuses it for good. Framework-free (no Vue).
//
//   const outbox = new Outbox({ baseUrl, token })     // storage: IndexedDB
//   await outbox.start()                               // loads what earlier pages left
//   outbox.on('ack', ({ room, entry, element, seq, deleted }) => ...)
//   await outbox.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Bea' }, base: 3 })
//
// How it behaves:
// - An entry ({ key, room, order, op, id, kind, data, patch, base, state,
//   attempts, notBefore, error, conflict }) is stored before it is sent; the
//   key is sent as Idempotency-Key and Op-ID, so a retry of a write whose
//   answer was lost is replayed by the server, never applied twice.
// - op: 'create' (PUT If-None-Match: *), 'put', 'patch' (merge patch),
//   'delete'; base is the version the user started from (If-Match; 0 = the
//   element does not exist yet, null = unconditional). When a write of an
//   element is acknowledged, later entries of that element based on the same
//   version are rebased onto the version it produced: a window's own edits
//   never conflict with each other.
// - Per room, one entry at a time, oldest first: network errors, 5xx, 429,
//   408, 409 idempotency_in_progress and 401 (kept until the user signs in
//   again) are retried with capped, jittered exponential backoff that honours
//   Retry-After; the room's queue waits meanwhile ('blocked'). Offline
//   (navigator.onLine false) nothing is sent until the 'online' event.
// - 409 conflict (and 412 on put/patch/delete: the base version is gone)
//   turns the entry into a conflict record (state 'conflict', with
//   { conflicts: [{ path, base, theirs, mine }], current }) that stays stored
//   until the user chooses: keepMine() re-sends it on the current version,
//   takeTheirs() drops the conflicting parts (and sends the rest).
// - Any other 4xx drops the entry ('refused', with the error).
// - Several tabs share the storage. Sending a room holds the Web Lock
//   "<name>:<room>" and reads the entry back from storage first, so an entry
//   is sent by one tab at a time and never after its acknowledgement; tabs
//   tell each other of changes and answers on a BroadcastChannel. Without
//   Web Locks two tabs may send one entry twice: the key makes the second a
//   replay.
//
// Events: 'change' ({ room }: entries or the room's state changed), 'ack'
// ({ room, entry, element, seq, deleted, mergedFrom, replayed }; emitted
// while the entry is still listed, so an overlay never flickers), 'refused'
// ({ room, entry, error }), 'conflict' ({ room, entry }), 'error'.

import { createStore, del, entries as idbEntries, set } from 'idb-keyval'
import { Emitter } from './emitter.js'
import { RoomFeedError, defaultBaseUrl, roomRequest } from './http.js'
import { toTokenSource } from './token.js'
import { parseSeq } from './roomcore.js'

const clone = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)))
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)

/** Storage in memory (tests, and browsers without IndexedDB): share one between outboxes to play two tabs. */
export function memoryStorage() {
  const map = new Map()
  return {
    map,
    async all() {
      return [...map.values()].map(clone)
    },
    async put(entry) {
      map.set(entry.key, clone(entry))
    },
    async delete(key) {
      map.delete(key)
    },
  }
}

/** Storage in IndexedDB (database "roomfeed-outbox", store "entries"), through idb-keyval. */
export function indexedDbStorage({ dbName = 'roomfeed-outbox', storeName = 'entries' } = {}) {
  const store = createStore(dbName, storeName)
  return {
    async all() {
      return (await idbEntries(store)).map(([, v]) => v)
    },
    put: (entry) => set(entry.key, entry, store),
    delete: (key) => del(key, store),
  }
}

export function defaultStorage() {
  return globalThis.indexedDB ? indexedDbStorage() : memoryStorage()
}

/**
 * What to do with a failed write: 'retry' (kept, sent again after a delay),
 * 'conflict' (kept for the user to resolve), 'drop' (refused for good).
 * err: { status (0 = no answer), code }; op: the entry's op.
 */
export function retryPolicy({ status = 0, code = '' } = {}, op = 'patch') {
  if (!status) return 'retry' // no answer: network down, or the answer was lost
  if (status >= 500 || status === 429 || status === 408) return 'retry'
  if (status === 401) return 'retry' // not signed in (any more): kept until a token works
  if (status === 409) {
    if (code === 'idempotency_in_progress') return 'retry'
    if (code === 'conflict') return 'conflict'
    return 'drop'
  }
  if (status === 412 && op !== 'create') return 'conflict'
  return 'drop'
}

/** JSON pointer segments of "/a/b~1c". */
export function pointerSegments(path) {
  if (!path) return []
  return path
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
}

export function getAt(value, path) {
  let v = value
  for (const s of pointerSegments(path)) {
    if (!isObject(v) && !Array.isArray(v)) return undefined
    v = v[s]
  }
  return v
}

/** A copy of obj with the value at path set (value undefined: removed). */
export function setAt(obj, path, value) {
  const segs = pointerSegments(path)
  if (!segs.length) return value
  const out = isObject(obj) ? { ...obj } : {}
  const [head, ...rest] = segs
  const restPath = rest.length ? '/' + rest.map((s) => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/') : ''
  const next = rest.length ? setAt(out[head], restPath, value) : value
  if (next === undefined) delete out[head]
  else out[head] = next
  return out
}

/** The leaves a merge patch sets: [{ path, value }] (value null: removed). */
export function patchLeaves(patch, prefix = '') {
  const out = []
  for (const [k, v] of Object.entries(patch ?? {})) {
    const path = `${prefix}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`
    if (isObject(v) && Object.keys(v).length) out.push(...patchLeaves(v, path))
    else out.push({ path, value: v })
  }
  return out
}

/** A merge patch without the parts at (or below) the given paths; empty objects left behind are pruned. */
export function removeFromPatch(patch, paths) {
  let out = clone(patch)
  for (const path of paths) {
    const segs = pointerSegments(path)
    // The patch may be shallower than the path (it replaces a whole subtree): cut where it ends.
    let cut = ''
    let node = out
    for (const s of segs) {
      cut += '/' + s.replace(/~/g, '~0').replace(/\//g, '~1')
      if (!isObject(node) || !(s in node)) break
      if (!isObject(node[s]) || cut === path) {
        out = setAt(out, cut, undefined)
        // Objects left empty by the removal go too.
        for (let up = cut.slice(0, cut.lastIndexOf('/')); up; up = up.slice(0, up.lastIndexOf('/'))) {
          const v = getAt(out, up)
          if (!isObject(v) || Object.keys(v).length) break
          out = setAt(out, up, undefined)
        }
        break
      }
      node = node[s]
    }
  }
  return out
}

/** The paths at which two JSON values differ (objects recurse). */
export function diffPaths(a, b, prefix = '') {
  if (same(a, b)) return []
  if (isObject(a) && isObject(b)) {
    const out = []
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      out.push(...diffPaths(a[k], b[k], `${prefix}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`))
    }
    return out
  }
  return [prefix]
}

let keyCounter = 0
/** A fresh Idempotency-Key (printable ASCII, at most 128 characters). */
export function newIdempotencyKey() {
  keyCounter += 1
  const rnd = globalThis.crypto?.randomUUID?.() ?? `${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`
  return `${rnd}-${keyCounter}`
}

/** @extends {Emitter<import('./types.js').OutboxEvents>} */
export class Outbox extends Emitter {
  /**
   * @param {object} [opts]
   * @param {string} [opts.baseUrl] server origin ('' = same origin)
   * @param {typeof fetch} [opts.fetch]
   * @param {*} [opts.token] as for RoomFeed (token.js)
   * @param {{all: Function, put: Function, delete: Function}} [opts.storage] default: IndexedDB
   * @param {{request: Function}|null} [opts.locks] Web Locks (navigator.locks); null: none
   * @param {(() => {postMessage: Function, onmessage: *, close: Function})|null} [opts.channel] makes the BroadcastChannel
   * @param {EventTarget|null} [opts.window] source of online/offline events
   * @param {() => boolean} [opts.isOnline]
   * @param {{min?: number, max?: number}} [opts.backoff] retry delays in ms
   * @param {() => number} [opts.random] jitter source (tests)
   * @param {() => number} [opts.now]
   * @param {string} [opts.name] prefix of lock and channel names
   * @param {number} [opts.timeoutMs] a write without an answer after this long is sent again
   * @param {string|(() => string)} [opts.client] the display name sent as ?client= with every write (in the
   *   server's open mode it is recorded as the write's actor, so the history says who changed what; with
   *   tokens the server uses the token's subject); a function is read at each send
   */
  constructor({
    baseUrl = defaultBaseUrl(),
    fetch = globalThis.fetch?.bind(globalThis),
    token,
    storage = defaultStorage(),
    locks = globalThis.navigator?.locks ?? null,
    channel = typeof globalThis.BroadcastChannel === 'function' ? (n) => new globalThis.BroadcastChannel(n) : null,
    window: win = typeof globalThis.addEventListener === 'function' ? globalThis : null,
    isOnline = () => globalThis.navigator?.onLine !== false,
    backoff = {},
    random = Math.random,
    now = Date.now,
    name = 'roomfeed.outbox',
    timeoutMs = 20000,
    client = '',
  } = {}) {
    super()
    this.baseUrl = String(baseUrl).replace(/\/+$/, '')
    this._fetch = fetch
    this._tokens = toTokenSource(token)
    this._storage = storage
    this._locks = locks
    this._makeChannel = channel
    this._win = win
    this._isOnline = isOnline
    this.backoff = { min: backoff.min ?? 500, max: backoff.max ?? 30000 }
    this._random = random
    this._now = now
    this.name = name
    this.timeoutMs = timeoutMs
    this._client = client

    this._rooms = new Map() // room -> entries as last read, oldest first
    this._blocked = new Map() // room -> { status, code, message, until }
    this._sending = new Set() // rooms with a request in flight here
    this._timers = new Map() // room -> retry timer
    this._draining = new Set()
    this._redrain = new Set()
    this._waiters = new Map() // key -> [resolve]
    this._unsaved = new Map() // key -> entry listed but not stored yet
    this._deleting = new Set() // keys unlisted whose storage delete is in flight
    this._chain = new Map() // `${room}\0${id}` -> Map(sent base -> version our write produced)
    this._tab = newIdempotencyKey().slice(0, 8)
    this._lastOrder = 0
    this._seqInTab = 0
    this._running = false
    this._ready = null
    this._channel = null
    this._onOnline = () => this._handleOnline()
    this._onOffline = () => this._handleOffline()
  }

  // ---- lifecycle ----------------------------------------------------------------

  /** Load what earlier pages left and start sending it. Resolves once loaded. */
  /** This outbox's tab id: the middle part of the order of every entry it queued. */
  get tab() {
    return this._tab
  }

  start() {
    if (this._ready) return this._ready
    this._running = true
    this._win?.addEventListener?.('online', this._onOnline)
    this._win?.addEventListener?.('offline', this._onOffline)
    if (this._makeChannel) {
      try {
        this._channel = this._makeChannel(this.name)
        this._channel.onmessage = (ev) => this._handleMessage(ev.data)
      } catch {
        this._channel = null
      }
    }
    this._ready = (async () => {
      await this._reloadAll()
      for (const room of this._rooms.keys()) this._drain(room)
    })()
    return this._ready
  }

  stop() {
    this._running = false
    this._ready = null
    this._win?.removeEventListener?.('online', this._onOnline)
    this._win?.removeEventListener?.('offline', this._onOffline)
    for (const t of this._timers.values()) clearTimeout(t)
    this._timers.clear()
    this._channel?.close?.()
    this._channel = null
  }

  // ---- reading ------------------------------------------------------------------

  /**
   * Every entry of room (pending and conflicts), oldest first.
   * @param {string} room
   * @returns {import('./types.js').OutboxEntry[]}
   */
  entries(room) {
    return this._rooms.get(room) ?? []
  }

  /** The entries of room waiting to be sent, oldest first. @param {string} room */
  pending(room) {
    return this.entries(room).filter((e) => e.state === 'pending')
  }

  /** The conflict records of room. @param {string} room */
  conflicts(room) {
    return this.entries(room).filter((e) => e.state === 'conflict')
  }

  /**
   * The room's outbox in one object: { pending, conflicts, sending, blocked }.
   * blocked: why its queue waits ({ status, code, message, until }; code
   * 'offline' when the browser is offline), or null.
   * @param {string} room
   * @returns {{ pending: number, conflicts: number, sending: boolean, blocked: import('./types.js').Blocked | null }}
   */
  state(room) {
    return {
      pending: this.pending(room).length,
      conflicts: this.conflicts(room).length,
      sending: this._sending.has(room),
      blocked: this._blocked.get(room) ?? null,
    }
  }

  /**
   * Resolves when the entry is acknowledged ({ outcome: 'ack', element }), refused or turned into a conflict.
   * @param {string} key
   * @returns {Promise<{ outcome: 'ack', element: any, seq: number|null, mergedFrom?: number|null, replayed?: boolean } | { outcome: 'conflict', entry: any } | { outcome: 'refused', error: RoomFeedError } | { outcome: 'superseded' }>}
   */
  settled(key) {
    return new Promise((resolve) => {
      if (!this._waiters.has(key)) this._waiters.set(key, [])
      this._waiters.get(key).push(resolve)
    })
  }

  _settle(key, result) {
    const list = this._waiters.get(key)
    this._waiters.delete(key)
    for (const fn of list ?? []) fn(result)
  }

  // ---- writing ------------------------------------------------------------------

  /**
   * Store a write and send it when its turn comes. Resolves to the entry once
   * it is stored. The entry is listed (and 'change' emitted) at once.
   * @param {string} room
   * @param {{ op: 'create'|'put'|'patch'|'delete', id: string, kind?: string, data?: any, patch?: any, base?: number|null }} write
   *   base: the version the change starts from (If-Match; 0 = the element must not exist; null = unconditional)
   * @returns {Promise<{ key: string, room: string, op: string, id: string, [k: string]: any }>}
   */
  enqueue(room, { op, id, kind, data, patch, base = null }) {
    if (!['create', 'put', 'patch', 'delete'].includes(op)) return Promise.reject(new TypeError(`outbox: unknown op ${op}`))
    if (!id) return Promise.reject(new TypeError('outbox: id is required'))
    const entry = {
      key: newIdempotencyKey(),
      room,
      order: this._nextOrder(),
      op,
      id,
      kind,
      data: clone(data),
      patch: clone(patch),
      base: base ?? null,
      state: 'pending',
      attempts: 0,
      notBefore: 0,
      at: this._now(),
    }
    this._list(room).push(entry)
    this._unsaved.set(entry.key, entry)
    this._emit('change', { room })
    return this._store(entry)
  }

  async _store(entry) {
    try {
      await this.start()
      await this._storage.put(entry)
    } finally {
      this._unsaved.delete(entry.key)
    }
    this._post({ type: 'changed', room: entry.room })
    this._drain(entry.room)
    return entry
  }

  /** Send the room's queue now, whatever the backoff says (a "retry now" button). */
  async retryNow(room) {
    const head = this.pending(room)[0]
    if (head && head.notBefore > this._now()) {
      head.notBefore = 0
      await this._storage.put(head)
    }
    this._drain(room)
  }

  /**
   * The server answers again (e.g. the room's feed went live after an
   * outage): send the room's queue now if it waits after a network error or
   * a 5xx, instead of at the end of its backoff. A 429 keeps honouring its
   * Retry-After, and nothing changes for a queue that does not wait.
   * Resolves to true when the queue was sent again.
   * @param {string} room
   */
  async reconnected(room) {
    const b = this._blocked.get(room)
    if (!b || !this._running || !this.pending(room).length) return false
    const outage = (b.status === 0 && b.code !== 'offline') || b.status >= 500
    if (!outage || !this._isOnline()) return false
    await this.retryNow(room)
    return true
  }

  /**
   * Resolve a conflict by keeping the user's change: it is sent again on
   * `version` (the version now shown; default: the conflict's current one).
   * @param {string} key
   * @param {{ version?: number }} [opts]
   */
  async keepMine(key, { version } = {}) {
    const rec = this._findConflict(key)
    if (!rec) return null
    const current = rec.conflict?.current
    const base = version ?? current?.version ?? null
    const next = { op: rec.op, id: rec.id, kind: rec.kind ?? current?.kind, data: rec.data, patch: rec.patch, base }
    // Listed before the record goes: the card never shows theirs in between.
    const entry = this.enqueue(rec.room, next)
    await this._removeRecord(rec)
    return entry
  }

  /**
   * Resolve a conflict by taking their version of the conflicting parts:
   * what the user changed elsewhere is still sent (on `version`); nothing is
   * sent when nothing is left.
   * @param {string} key
   * @param {{ version?: number }} [opts]
   */
  async takeTheirs(key, { version } = {}) {
    const rec = this._findConflict(key)
    if (!rec) return null
    const current = rec.conflict?.current
    const base = version ?? current?.version ?? null
    const paths = (rec.conflict?.conflicts ?? []).map((c) => c.path)
    let next = null
    if (rec.op === 'patch') {
      const rest = removeFromPatch(rec.patch, paths)
      if (Object.keys(rest).length) next = { op: 'patch', id: rec.id, patch: rest, base }
    } else if (rec.op === 'put' && current) {
      let data = rec.data
      let kind = rec.kind ?? current.kind
      for (const c of rec.conflict.conflicts) {
        if (c.path === '#kind') kind = current.kind
        else data = setAt(data, c.path, getAt(current.data, c.path))
      }
      if (!same(data, current.data) || kind !== current.kind) next = { op: 'put', id: rec.id, kind, data, base }
    }
    // (A delete: theirs stays, nothing is sent.)
    const entry = next ? this.enqueue(rec.room, next) : null
    await this._removeRecord(rec)
    return entry
  }

  /** Forget a conflict record (their version stays, nothing is sent). */
  async discard(key) {
    const rec = this._findConflict(key)
    if (rec) await this._removeRecord(rec)
  }

  _findConflict(key) {
    for (const list of this._rooms.values()) {
      const e = list.find((x) => x.key === key && x.state === 'conflict')
      if (e) return e
    }
    return null
  }

  async _removeRecord(rec) {
    this._unlist(rec.room, rec.key)
    this._emit('change', { room: rec.room })
    await this._delete(rec.key)
    this._post({ type: 'changed', room: rec.room })
  }

  async _delete(key) {
    this._deleting.add(key)
    try {
      await this._storage.delete(key)
    } finally {
      this._deleting.delete(key)
    }
  }

  // ---- the mirror of the storage ----------------------------------------------------

  _list(room) {
    if (!this._rooms.has(room)) this._rooms.set(room, [])
    return this._rooms.get(room)
  }

  _unlist(room, key) {
    const list = this._rooms.get(room)
    const i = list?.findIndex((e) => e.key === key) ?? -1
    if (i !== -1) list.splice(i, 1)
  }

  _nextOrder() {
    // Sortable across tabs: time, then this tab, then a counter.
    const t = Math.max(this._now(), this._lastOrder)
    this._lastOrder = t
    this._seqInTab += 1
    return `${t.toString(36).padStart(10, '0')}.${this._tab}.${String(this._seqInTab).padStart(8, '0')}`
  }

  /** The storage's entries, with those listed here but not stored yet, without those being deleted. */
  async _read() {
    const all = (await this._storage.all()).filter((e) => !this._deleting.has(e.key))
    const keys = new Set(all.map((e) => e.key))
    for (const e of this._unsaved.values()) if (!keys.has(e.key)) all.push(e)
    return all
  }

  async _reloadAll() {
    const all = await this._read()
    const rooms = new Map()
    for (const e of all) {
      if (!rooms.has(e.room)) rooms.set(e.room, [])
      rooms.get(e.room).push(e)
    }
    const touched = new Set([...this._rooms.keys(), ...rooms.keys()])
    for (const list of rooms.values()) list.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0))
    this._rooms = rooms
    for (const room of touched) this._emit('change', { room })
  }

  /** Read room's entries back from storage (another tab may have sent, added or resolved some). */
  async _reload(room) {
    const all = (await this._read()).filter((e) => e.room === room)
    all.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0))
    const changed = !same(all, this._rooms.get(room) ?? [])
    if (all.length) this._rooms.set(room, all)
    else this._rooms.delete(room)
    if (changed) this._emit('change', { room })
    return all
  }

  // ---- sending ------------------------------------------------------------------------

  _drain(room) {
    if (!this._running) return
    if (this._draining.has(room)) {
      this._redrain.add(room)
      return
    }
    this._draining.add(room)
    const run = () => this._drainLocked(room)
    const locked = this._locks?.request ? this._locks.request(`${this.name}:${room}`, run) : run()
    Promise.resolve(locked)
      .catch((err) => this._emit('error', err))
      .finally(() => {
        this._draining.delete(room)
        if (this._redrain.delete(room)) this._drain(room)
      })
  }

  _clearTimer(room) {
    const t = this._timers.get(room)
    if (t !== undefined) clearTimeout(t)
    this._timers.delete(room)
  }

  _schedule(room, ms) {
    this._clearTimer(room)
    this._timers.set(
      room,
      setTimeout(() => {
        this._timers.delete(room)
        this._drain(room)
      }, ms),
    )
  }

  _setBlocked(room, blocked) {
    if (same(blocked ?? null, this._blocked.get(room) ?? null)) return
    if (blocked) this._blocked.set(room, blocked)
    else this._blocked.delete(room)
    this._emit('change', { room })
  }

  /** Send room's entries one by one while the lock is held. */
  async _drainLocked(room) {
    this._clearTimer(room)
    for (;;) {
      if (!this._running) return
      const list = await this._reload(room)
      const head = list.find((e) => e.state === 'pending')
      if (!head) {
        this._setBlocked(room, null)
        return
      }
      if (!this._isOnline()) {
        this._setBlocked(room, { status: 0, code: 'offline', message: 'offline', until: null })
        return // the 'online' event drains again
      }
      const wait = head.notBefore - this._now()
      if (wait > 0) {
        this._schedule(room, wait)
        return
      }
      this._sending.add(room)
      this._emit('change', { room })
      let result
      try {
        result = await this._send(head)
      } finally {
        this._sending.delete(room)
      }
      if (result.ok) {
        await this._acknowledged(head, result)
        continue
      }
      const err = result.error
      const policy = retryPolicy(err, head.op)
      if (policy === 'retry') {
        if (!err.status && !this._isOnline()) {
          this._setBlocked(room, { status: 0, code: 'offline', message: 'offline', until: null })
          this._emit('change', { room })
          return
        }
        head.attempts += 1
        const delay = Math.max(err.retryAfterMs ?? 0, this._delay(head.attempts))
        head.notBefore = this._now() + delay
        head.error = { status: err.status, code: err.code, message: err.message }
        await this._storage.put(head)
        this._setBlocked(room, { ...head.error, until: head.notBefore })
        this._emit('change', { room })
        this._schedule(room, delay)
        return
      }
      if (policy === 'conflict') {
        const conflict = await this._conflictOf(head, err)
        if (conflict === 'retry') {
          head.attempts += 1
          head.notBefore = this._now() + this._delay(head.attempts)
          await this._storage.put(head)
          this._schedule(room, head.notBefore - this._now())
          return
        }
        if (conflict) {
          head.state = 'conflict'
          head.conflict = conflict
          head.error = { status: err.status, code: err.code, message: err.message }
          await this._storage.put(head)
          this._emit('conflict', { room, entry: head })
          this._emit('change', { room })
          this._post({ type: 'changed', room })
          this._settle(head.key, { outcome: 'conflict', entry: head })
          continue
        }
        // The element is gone (refused), or already as this write wanted it (nothing to say).
        await this._dropped(head, conflict === null ? new RoomFeedError('element no longer exists', { status: 404, code: 'not_found' }) : null)
        continue
      }
      await this._dropped(head, err)
    }
  }

  _delay(attempts) {
    const { min, max } = this.backoff
    const d = Math.min(max, min * 2 ** Math.min(attempts - 1, 20))
    return Math.round(d / 2 + (this._random() * d) / 2)
  }

  /** The If-Match version for entry: its base, moved along the versions our own writes produced. */
  _effectiveBase(entry) {
    let v = entry.base
    const chain = this._chain.get(`${entry.room}\0${entry.id}`)
    const seen = new Set()
    while (v !== null && chain?.has(v) && !seen.has(v)) {
      seen.add(v)
      v = chain.get(v)
    }
    return v
  }

  async _send(entry) {
    const id = encodeURIComponent(entry.id)
    const base = entry.op === 'create' ? null : this._effectiveBase(entry)
    const headers = { 'Idempotency-Key': entry.key, 'Op-ID': entry.key }
    if (base !== null && base !== undefined) headers['If-Match'] = `"${base}"`
    let method = 'PUT'
    let body
    if (entry.op === 'create') {
      headers['If-None-Match'] = '*'
      body = { kind: entry.kind, data: entry.data }
    } else if (entry.op === 'put') {
      body = { kind: entry.kind, data: entry.data }
    } else if (entry.op === 'patch') {
      method = 'PATCH'
      headers['Content-Type'] = 'application/merge-patch+json'
      body = entry.patch
    } else {
      method = 'DELETE'
    }
    entry.sentBase = entry.op === 'create' ? 0 : base
    try {
      // A write that hangs must not hold the room's queue: it is given up
      // (a network error) and sent again, which the key makes harmless.
      const res = await roomRequest(this._endpoint(entry.room), method, `/elements/${id}`, { body, headers, timeoutMs: this.timeoutMs })
      return { ok: true, res }
    } catch (err) {
      return { ok: false, error: err instanceof RoomFeedError ? err : new RoomFeedError(String(err?.message ?? err), { cause: err }) }
    }
  }

  _endpoint(room) {
    return { baseUrl: this.baseUrl, fetch: this._fetch, tokens: this._tokens, room, client: this.clientName }
  }

  /** The display name writes are sent under (?client=), '' for none. */
  get clientName() {
    const c = typeof this._client === 'function' ? this._client() : this._client
    return c ? String(c) : ''
  }

  async _acknowledged(entry, { res }) {
    const room = entry.room
    const deleted = entry.op === 'delete'
    const seq = parseSeq(res.headers?.get?.('Event-ID'))
    const element = res.body?.id ? res.body : { id: entry.id, kind: entry.kind }
    const mergedFrom = parseSeq(String(res.headers?.get?.('Merged-From') ?? '').replace(/"/g, ''))
    const replayed = res.headers?.get?.('Idempotent-Replayed') === 'true'
    // Later writes of this element based on the version this one started
    // from now start from the version it produced.
    if (typeof element.version === 'number' && entry.sentBase !== null && entry.sentBase !== undefined) {
      const k = `${room}\0${entry.id}`
      if (!this._chain.has(k)) this._chain.set(k, new Map())
      this._chain.get(k).set(entry.sentBase, element.version)
      for (const later of this.pending(room)) {
        if (later.key === entry.key || later.id !== entry.id || later.base !== entry.sentBase) continue
        later.base = element.version
        await this._storage.put(later)
      }
    }
    this._setBlocked(room, null)
    const answer = { room, entry, element, seq, deleted, mergedFrom, replayed }
    this._emit('ack', answer)
    this._unlist(room, entry.key)
    await this._delete(entry.key)
    this._emit('change', { room })
    this._post({ type: 'ack', room, key: entry.key, element, seq, deleted })
    this._settle(entry.key, { outcome: 'ack', element, seq, mergedFrom, replayed })
  }

  /** Forget an entry refused for good (err), or no longer needed (err null: nothing is said). */
  async _dropped(entry, err) {
    const room = entry.room
    this._unlist(room, entry.key)
    await this._delete(entry.key)
    if (err) this._emit('refused', { room, entry, error: err })
    this._emit('change', { room })
    this._post({ type: 'changed', room })
    this._settle(entry.key, err ? { outcome: 'refused', error: err } : { outcome: 'superseded' })
  }

  /**
   * The conflict record of a refused write: the server's (409), or, after a
   * 412, one built from the current element. null: the element is gone;
   * false: nothing differs any more; 'retry': the element could not be read.
   */
  async _conflictOf(entry, err) {
    if (err.status === 409 && Array.isArray(err.details?.conflicts)) {
      return { conflicts: err.details.conflicts, current: err.details.current ?? null }
    }
    let current
    try {
      const res = await roomRequest(this._endpoint(entry.room), 'GET', `/elements/${encodeURIComponent(entry.id)}`)
      current = res.body
    } catch (e) {
      if (e.status === 404) return entry.op === 'delete' ? false : null
      return 'retry'
    }
    if (entry.op === 'delete') {
      return { conflicts: [{ path: '', theirs: current.data, mine: null }], current, delete: true }
    }
    const conflicts = []
    if (entry.op === 'patch') {
      for (const { path, value } of patchLeaves(entry.patch)) {
        const theirs = getAt(current.data, path)
        const mine = value === null ? undefined : value
        if (!same(theirs, mine)) conflicts.push(pruneUndefined({ path, theirs, mine }))
      }
    } else {
      for (const path of diffPaths(current.data, entry.data)) {
        conflicts.push(pruneUndefined({ path, theirs: getAt(current.data, path), mine: getAt(entry.data, path) }))
      }
      if (entry.kind && entry.kind !== current.kind) conflicts.push({ path: '#kind', theirs: current.kind, mine: entry.kind })
    }
    return conflicts.length ? { conflicts, current } : false
  }

  // ---- tabs, network ----------------------------------------------------------------------

  _post(msg) {
    try {
      this._channel?.postMessage(msg)
    } catch {
      /* a closed channel: the other tabs re-read the storage on their next drain */
    }
  }

  async _handleMessage(msg) {
    if (!msg || !this._running) return
    if (msg.type === 'ack') {
      const entry = this.entries(msg.room).find((e) => e.key === msg.key) ?? { key: msg.key, room: msg.room }
      this._emit('ack', { room: msg.room, entry, element: msg.element, seq: msg.seq, deleted: msg.deleted, remote: true })
      this._settle(msg.key, { outcome: 'ack', element: msg.element, seq: msg.seq })
    }
    await this._reload(msg.room)
    // The tab that wrote may go away before sending: whoever holds the lock next sends.
    if (this.pending(msg.room).length) this._drain(msg.room)
  }

  _handleOnline() {
    for (const room of this._rooms.keys()) {
      this._clearTimer(room)
      this.retryNow(room)
    }
  }

  _handleOffline() {
    for (const room of this._rooms.keys()) {
      if (this.pending(room).length) this._setBlocked(room, { status: 0, code: 'offline', message: 'offline', until: null })
    }
  }
}

function pruneUndefined(o) {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k]
  return o
}

/**
 * An Outbox for a connection (connect()): requests go to its server with its
 * token, and every acknowledged write is applied at once to the room it
 * follows (exactly once, whichever of the answer and the feed's echo comes
 * first); writes are sent under the connection's client name (?client=, the
 * actor the server records in open mode), and when the stream goes live
 * again after an outage, writes waiting after a network error or a 5xx are
 * sent at once. options as for new Outbox (storage: IndexedDB when there is one,
 * else memory). Call start() before use.
 *
 * @param {{ endpoint: { baseUrl: string, fetch: typeof fetch, tokens: any }, rooms: Map<string, { applyAnswer: Function }>, hub?: { client: string } }} conn
 * @param {ConstructorParameters<typeof Outbox>[0]} [options]
 */
export function createOutbox(conn, options = {}) {
  const { baseUrl, fetch, tokens } = conn.endpoint
  const client = () => conn.hub?.client ?? ''
  const outbox = new Outbox({ baseUrl, fetch, token: tokens, client, ...options })
  outbox.on('ack', (a) => {
    conn.rooms.get(a.room)?.applyAnswer({ element: a.element, seq: a.seq, deleted: a.deleted, key: a.entry?.key })
  })
  // The stream is open again after an outage: writes waiting out their
  // backoff after a network error or a 5xx go now (see reconnected()).
  conn.hub?.on?.('status', (status) => {
    if (status !== 'live') return
    for (const room of outbox._rooms.keys()) outbox.reconnected(room)
  })
  return outbox
}

// Drafts: what people are typing, shared live as signals (POST /signals,
// delivered without an id: never recorded, never in the history).
// Framework-free; works on any room client (RoomFeed or HubRoom) built with
// signals: [DRAFT_SIGNAL].
//
//   const drafts = new Drafts({ room: feed })
//   drafts.typing('c1', 'name', 'Ari')   // throttled: the first at once, then at most one per interval
//   drafts.end('c1', 'name')             // commit, cancel or blur: the others clear the mark
//   drafts.on('change', () => drafts.list())  // [{ id, field, person, value, at }]
//
// Sending: per field, the first keystroke goes at once, then at most one
// signal per `interval` ms carrying the latest text (so others see it within
// about interval + the network), plus a keep-alive every `keepAlive` ms
// while the field stays open. A 429 pauses sending for Retry-After; a lost
// preview is never retried (the next keystroke carries the text anyway).
// Receiving: a draft is shown until its 'end' signal, until its person
// leaves the room (presence), or `ttl` ms after their last signal. Signals
// from this tab are ignored (other tabs of the same person are shown).

import { Emitter } from './emitter.js'

export const DRAFT_SIGNAL = 'draft'

function newTabId() {
  return (globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2)).slice(0, 12)
}

/** @extends {Emitter<{ change: import('./types.js').Draft[], error: Error }>} */
export class Drafts extends Emitter {
  /**
   * @param {object} opts
   * @param {import('./roomcore.js').RoomCore} opts.room the room client (signal(), 'signal', 'presence')
   * @param {number} [opts.interval] ms between two signals of one field (default 200: at most 5 a second)
   * @param {number} [opts.keepAlive] ms between re-sends of an unchanged open draft (default 5000)
   * @param {number} [opts.ttl] ms after which a silent remote draft is dropped (default 15000)
   * @param {string} [opts.event] the signal name
   * @param {() => number} [opts.now]
   */
  constructor({ room, interval = 200, keepAlive = 5000, ttl = 15000, event = DRAFT_SIGNAL, now = Date.now }) {
    super()
    this.room = room
    this.interval = interval
    this.keepAlive = keepAlive
    this.ttl = ttl
    this.event = event
    this._now = now
    this.tab = newTabId()
    this._out = new Map() // "id\0field" -> { id, field, value, lastSent, timer, alive }
    this._in = new Map() // "id\0field\0person" -> { id, field, person, value, at, timer }
    this._pausedUntil = 0
    this._people = null
    this._off = [
      room.on('signal', (sig) => this._receive(sig)),
      room.on('presence', (people) => this._presence(people)),
    ]
  }

  /** Stop listening and sending; remote drafts are forgotten. */
  close() {
    for (const off of this._off) off()
    for (const o of this._out.values()) this._clearOut(o)
    this._out.clear()
    for (const d of this._in.values()) clearTimeout(d.timer)
    this._in.clear()
  }

  // ---- outgoing ----------------------------------------------------------------

  /** The user typed: share value (a string as shown in the field) soon. */
  typing(id, field, value) {
    const k = `${id}\0${field}`
    let o = this._out.get(k)
    if (!o) {
      o = { id, field, value, lastSent: 0, timer: null, alive: null, sent: null }
      this._out.set(k, o)
    }
    o.value = value
    if (o.timer !== null) return // the next send carries the latest value
    const wait = Math.max(0, o.lastSent + this.interval - this._now(), this._pausedUntil - this._now())
    o.timer = setTimeout(() => {
      o.timer = null
      if (this._out.get(k) === o) this._sendDraft(o)
    }, wait)
  }

  /** The user committed, cancelled or left the field: the others drop the mark. */
  end(id, field) {
    const k = `${id}\0${field}`
    const o = this._out.get(k)
    if (!o) return
    this._clearOut(o)
    this._out.delete(k)
    if (o.sent !== null) this._post({ id, field, state: 'end' })
  }

  _clearOut(o) {
    clearTimeout(o.timer)
    clearTimeout(o.alive)
    o.timer = null
    o.alive = null
  }

  _sendDraft(o) {
    o.lastSent = this._now()
    clearTimeout(o.alive)
    o.sent = o.value
    this._post({ id: o.id, field: o.field, state: 'typing', value: o.value })
    o.alive = setTimeout(() => {
      o.alive = null
      if (this._out.get(`${o.id}\0${o.field}`) === o && o.timer === null) this._sendDraft(o)
    }, this.keepAlive)
  }

  _post(data) {
    if (this._now() < this._pausedUntil && data.state === 'typing') return
    this.room.signal(this.event, { ...data, tab: this.tab }).catch((err) => {
      if (err?.status === 429) this._pausedUntil = this._now() + (err.retryAfterMs ?? 1000)
      this._emit('error', err)
    })
  }

  // ---- incoming ----------------------------------------------------------------

  /**
   * The drafts of other people now: [{ id, field, person, value, at }], by element, field, person.
   * @returns {import('./types.js').Draft[]}
   */
  list() {
    return [...this._in.values()]
      .map(({ id, field, person, value, at }) => ({ id, field, person, value, at }))
      .sort((a, b) => (a.id + a.field + a.person < b.id + b.field + b.person ? -1 : 1))
  }

  _receive(sig) {
    if (sig?.type !== this.event) return
    const d = sig.data
    if (!d || typeof d.id !== 'string' || typeof d.field !== 'string' || d.tab === this.tab) return
    const person = String(sig.person ?? '')
    const k = `${d.id}\0${d.field}\0${person}`
    const held = this._in.get(k)
    if (held) clearTimeout(held.timer)
    if (d.state === 'end') {
      if (held) {
        this._in.delete(k)
        this._emit('change', this.list())
      }
      return
    }
    const entry = { id: d.id, field: d.field, person, value: d.value, at: sig.at, timer: null }
    entry.timer = setTimeout(() => {
      if (this._in.get(k) === entry) {
        this._in.delete(k)
        this._emit('change', this.list())
      }
    }, this.ttl)
    this._in.set(k, entry)
    this._emit('change', this.list())
  }

  /** Someone left the room: their drafts go. */
  _presence(people) {
    const now = new Set(people)
    const before = this._people
    this._people = now
    if (!before) return
    let changed = false
    for (const [k, d] of this._in) {
      if (before.has(d.person) && !now.has(d.person)) {
        clearTimeout(d.timer)
        this._in.delete(k)
        changed = true
      }
    }
    if (changed) this._emit('change', this.list())
  }
}

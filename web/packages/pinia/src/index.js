// @roomfeed/pinia: a Pinia store per roomfeed room.
//
//   // stores/room.js
//   import { defineRoomStore, acceptRoomStoreHMR } from '@roomfeed/pinia'
//   import { rf, outbox } from '../roomfeed.js' // connect() and createOutbox(), made once
//   export const useRoom = defineRoomStore('room', { connection: rf, outbox, signals: ['cursor'] })
//   if (import.meta.hot) import.meta.hot.accept(acceptRoomStoreHMR(useRoom, import.meta.hot))
//
//   // a component
//   const room = useRoom(props.room) // followed while a component uses it
//
// - Options are given once, with the store's name: they are part of its
//   identity. Two definitions of one name with other options used in one
//   Pinia throw instead of one silently winning.
// - useRoom(room) inside a component (any effect scope) holds the room: its
//   feed starts with the first holder and, when the last one unmounts, stops,
//   and the store is disposed ($dispose, its state removed from the Pinia).
//   Outside a scope call room.release() when done.
// - HMR: the feed and the listeners live outside the store's setup, so a hot
//   update (acceptRoomStoreHMR) keeps the state and the running feed; the new
//   setup takes the listeners over.

import { acceptHMRUpdate, defineStore, getActivePinia } from 'pinia'
import { getCurrentScope, onScopeDispose, ref } from 'vue'
import { mergePatch } from '@roomfeed/client'

/**
 * @typedef {object} RoomElement
 * @property {string} id
 * @property {string} kind
 * @property {number} version
 * @property {Record<string, any>} data
 * @property {string} [updated_at]
 */

/**
 * @typedef {{ outcome: 'ack', element: RoomElement, seq: number|null } | { outcome: 'conflict', entry: any } | { outcome: 'refused', error: import('@roomfeed/client').RoomFeedError } | { outcome: 'superseded' }} WriteOutcome
 */

/**
 * The store of one room (a Pinia setup store; state unwrapped).
 * @typedef {object} RoomStore
 * @property {string} $id `${name}/${room}`
 * @property {() => void} $dispose
 * @property {string} room
 * @property {Record<string, RoomElement>} elements confirmed, with the pending writes laid over
 * @property {Record<string, number>} pending id -> writes not yet acknowledged
 * @property {Record<string, Array<{ key: string, op: string, conflicts?: any[], current?: RoomElement }>>} conflicts
 * @property {string} status connecting | live | reconnecting | offline | error
 * @property {{ status: number, code: string, message: string } | null} problem why the room cannot be followed
 * @property {string[]} people who is in the room
 * @property {string} cursor the last applied seq
 * @property {boolean} loaded the first snapshot is in
 * @property {import('@roomfeed/client').RoomFeedError | null} error the last refused write
 * @property {() => import('@roomfeed/client').HubRoom} client the room client (on('signal'), …)
 * @property {(id: string, kind: string, data: Record<string, any>) => Promise<WriteOutcome>} create
 * @property {(id: string, kind: string, data: Record<string, any>, opts?: { base?: number }) => Promise<WriteOutcome>} put
 * @property {(id: string, patch: Record<string, any>, opts?: { base?: number }) => Promise<WriteOutcome>} patch
 * @property {(id: string, opts?: { base?: number }) => Promise<WriteOutcome>} remove
 * @property {(event: string, data?: any) => Promise<any>} signal
 * @property {(key: string) => any} keepMine
 * @property {(key: string) => any} takeTheirs
 * @property {() => void} retain
 * @property {() => void} release
 */

/**
 * @typedef {{ (room: string, pinia?: import('pinia').Pinia): RoomStore, storeName: string, definition: (room: string) => any, rooms: () => string[] }} UseRoomStore
 */

const MARK = Symbol.for('roomfeed.pinia.roomStore')
const objectIds = new WeakMap()
let nextObjectId = 1

function identity(value) {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(identity).join(',')}]`
  if (!objectIds.has(value)) objectIds.set(value, nextObjectId++)
  return `#${objectIds.get(value)}`
}

/** A stable key of options: plain values by value, objects and functions by identity. */
export function optionsKey(options = {}) {
  return Object.keys(options)
    .filter((k) => options[k] !== undefined)
    .sort()
    .map((k) => `${k}=${identity(options[k])}`)
    .join('&')
}

// pinia -> Map(store id -> { key, feed, holders, unbind }): what outlives a hot setup.
const live = new WeakMap()

function registry(pinia) {
  if (!live.has(pinia)) live.set(pinia, new Map())
  return live.get(pinia)
}

/**
 * Define the stores of rooms under `name` (store ids `${name}/${room}`).
 *
 * @param {string} name
 * @param {object} options
 * @param {{ hub?: any, createFeed?: Function }} options.connection a connect() result or a FeedHub
 * @param {any} [options.outbox] an Outbox (createOutbox): writes are queued there; default: sent directly
 * @param {string[]} [options.signals] signal names to receive
 * @param {string[]} [options.messages] custom message names to receive
 * @param {boolean} [options.presence] keep `people` (default true)
 * @returns {UseRoomStore}
 */
export function defineRoomStore(name, options) {
  if (!name || typeof name !== 'string') throw new TypeError('defineRoomStore: name must be a non-empty string')
  const hub = options?.connection?.hub ?? options?.connection
  if (typeof hub?.createFeed !== 'function') throw new TypeError('defineRoomStore: options.connection must be connect() or a FeedHub')
  const key = optionsKey(options)
  const definitions = new Map() // room -> pinia useStore

  function definition(room) {
    if (!definitions.has(room)) {
      const id = `${name}/${room}`
      definitions.set(room, defineStore(id, () => setupRoom(id, room, hub, options, key)))
    }
    return definitions.get(room)
  }

  /**
   * The store of `room`, held by the calling component until it unmounts.
   * @param {string} room
   * @param {any} [pinia]
   * @returns {RoomStore}
   */
  function useRoom(room, pinia = getActivePinia()) {
    if (!room || typeof room !== 'string') throw new TypeError('useRoom: room must be a non-empty string')
    const id = `${name}/${room}`
    const held = pinia && registry(pinia).get(id)
    if (held && held.key !== key) {
      throw new Error(`roomfeed: store "${id}" already exists with other options; give this definition another name`)
    }
    const store = /** @type {RoomStore} */ (/** @type {unknown} */ (definition(room)(pinia)))
    store.retain()
    if (getCurrentScope()) onScopeDispose(() => store.release())
    return store
  }

  /** @type {any} */ (useRoom)[MARK] = true
  useRoom.storeName = name
  useRoom.definition = definition
  /** The rooms whose stores exist now (defined through this definition). */
  useRoom.rooms = () => [...definitions.keys()]
  return /** @type {UseRoomStore} */ (/** @type {unknown} */ (useRoom))
}

/**
 * The hot-update handler of a module that exports room store definitions:
 *   if (import.meta.hot) import.meta.hot.accept(acceptRoomStoreHMR(useRoom, import.meta.hot))
 */
/**
 * @param {UseRoomStore} useRoom
 * @param {any} hot import.meta.hot
 * @returns {(newModule: Record<string, any>) => void}
 */
export function acceptRoomStoreHMR(useRoom, hot) {
  return (newModule) => {
    for (const next of Object.values(newModule ?? {})) {
      if (!next?.[MARK] || next.storeName !== useRoom.storeName) continue
      for (const room of useRoom.rooms()) {
        acceptHMRUpdate(useRoom.definition(room), hot)({ useStore: next.definition(room) })
      }
    }
  }
}

function overlay(el, entry) {
  if (entry.op === 'create' || entry.op === 'put') return { ...(el ?? {}), id: entry.id, kind: entry.kind, data: entry.data, version: el?.version ?? 0 }
  if (entry.op === 'patch') return el ? { ...el, data: mergePatch(el.data ?? {}, entry.patch) } : null
  return null // delete
}

function setupRoom(id, room, hub, options, key) {
  const pinia = getActivePinia()
  const reg = registry(pinia)
  const { outbox = null, signals = [], messages = [], presence = true } = options
  let res = reg.get(id)
  if (!res) {
    res = { key, feed: hub.createFeed(room, { signals, messages, presence }), holders: 0, unbind: () => {} }
    reg.set(id, res)
  }
  const feed = res.feed

  const elements = ref({}) // id -> element: confirmed, with the outbox's pending writes laid over
  const pending = ref({}) // id -> writes not yet acknowledged
  const conflicts = ref({}) // id -> [{ key, op, conflicts, current }]
  const status = ref(feed.status)
  const problem = ref(feed.problem)
  const people = ref([...(feed.people ?? [])])
  const cursor = ref(feed.cursor)
  const loaded = ref(feed.applied !== null)
  const error = ref(null) // the last refused write: a RoomFeedError

  function rebuild() {
    const list = outbox ? outbox.pending(room) : []
    const next = {}
    for (const [k, el] of feed.elements) next[k] = el
    for (const e of list) {
      const el = overlay(next[e.id] ?? null, e)
      if (el) next[e.id] = el
      else delete next[e.id]
    }
    elements.value = next
    const p = {}
    for (const e of list) p[e.id] = (p[e.id] ?? 0) + 1
    pending.value = p
    const c = {}
    for (const e of outbox ? outbox.conflicts(room) : []) (c[e.id] ??= []).push({ key: e.key, op: e.op, ...e.conflict })
    conflicts.value = c
    cursor.value = feed.cursor
  }

  // The listeners of the newest setup (a hot update runs setup again).
  res.unbind()
  const offs = [
    feed.on('status', (s) => (status.value = s)),
    feed.on('problem', (p) => (problem.value = p)),
    feed.on('presence', (list) => (people.value = [...list])),
    feed.on('snapshot', () => {
      loaded.value = true
      rebuild()
    }),
    feed.on('change', rebuild),
    feed.on('event', () => (cursor.value = feed.cursor)),
  ]
  if (outbox) {
    offs.push(
      outbox.on('ack', (a) => {
        if (a.room === room) feed.applyAnswer({ element: a.element, seq: a.seq, deleted: a.deleted, key: a.entry?.key })
      }),
      outbox.on('change', ({ room: r }) => r === room && rebuild()),
      outbox.on('refused', ({ room: r, error: err }) => r === room && (error.value = err)),
    )
  }
  res.unbind = () => offs.forEach((off) => off())
  rebuild()

  async function write(spec) {
    if (outbox) {
      const entry = await outbox.enqueue(room, spec)
      return outbox.settled(entry.key)
    }
    try {
      const r =
        spec.op === 'patch'
          ? await feed.patch(spec.id, spec.patch, { ifMatch: spec.base })
          : spec.op === 'delete'
            ? await feed.delete(spec.id, { ifMatch: spec.base })
            : await feed.put(spec.id, { kind: spec.kind, data: spec.data }, spec.op === 'create' ? { ifNoneMatch: true } : { ifMatch: spec.base })
      return { outcome: 'ack', element: r.element, seq: r.seq }
    } catch (err) {
      error.value = err
      return { outcome: 'refused', error: err }
    }
  }

  const version = (k) => feed.elements.get(k)?.version ?? 0

  return {
    room: ref(room),
    elements,
    pending,
    conflicts,
    status,
    problem,
    people,
    cursor,
    loaded,
    error,
    /** The room client (a HubRoom): on('signal' | 'message' | …), elements, signal(). */
    client: () => feed,
    /** Create an element; resolves to the outbox's outcome ({ outcome: 'ack', element } …). */
    create: (elId, kind, data) => write({ op: 'create', id: elId, kind, data, base: 0 }),
    /** Replace an element (PUT), based on the version held (or opts.base). */
    put: (elId, kind, data, opts = {}) => write({ op: 'put', id: elId, kind, data, base: opts.base ?? version(elId) }),
    /** Merge-patch an element's data (null removes a field). */
    patch: (elId, patch, opts = {}) => write({ op: 'patch', id: elId, patch, base: opts.base ?? version(elId) }),
    /** Delete an element, only if nobody changed it since the version held. */
    remove: (elId, opts = {}) => write({ op: 'delete', id: elId, base: opts.base ?? version(elId) }),
    /** An ephemeral signal to everyone following the room now. */
    signal: (event, data) => feed.signal(event, data),
    keepMine: (k) => outbox?.keepMine(k) ?? null,
    takeTheirs: (k) => outbox?.takeTheirs(k) ?? null,
    /** Hold the room (useRoom does): the first holder starts the feed. */
    retain() {
      res.holders += 1
      if (res.holders === 1) {
        outbox?.start().then(rebuild)
        feed.start()
      }
    },
    /** Let go of the room: the last holder stops the feed and disposes the store. */
    release() {
      if (res.holders === 0) return
      res.holders -= 1
      if (res.holders > 0) return
      res.unbind()
      feed.stop()
      reg.delete(id)
      pinia._s.get(id)?.$dispose()
      delete pinia.state.value[id]
    },
  }
}

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
// Two layers:
// - defineRoomStoreFactory(name, setup, { hold }): stores of rooms whose
//   options are part of their identity. useX(room, options) answers the
//   store of that room made with those options (id `${name}/${room}`, plus
//   the options' key when there are options that tell stores apart, see
//   storeId); other options, another store. The setup runs as a Pinia setup
//   store, given a context whose `kept` object outlives hot updates (HMR) and
//   whose listeners (ctx.listen) the next setup takes over. Holding (hold:
//   true, the default) is counted outside the store's actions, so that
//   @pinia/testing's createTestingPinia() stubbing every action changes
//   nothing: a store is held by each effect scope (component) that used it
//   and disposed (its state removed from the Pinia) when the last one ends.
// - defineRoomStore(name, options): the ready-made store of a room on a
//   connect() connection (and an outbox), built on the factory.

import { acceptHMRUpdate, defineStore, getActivePinia } from 'pinia'
import { getCurrentScope, isProxy, onScopeDispose, ref } from 'vue'
import { mergePatch } from '@roomfeed/client'

/**
 * @typedef {import('@roomfeed/client').RoomElement} RoomElement
 */

/**
 * @typedef {{ outcome: 'ack', element: RoomElement, seq: number|null } | { outcome: 'conflict', entry: any } | { outcome: 'refused', error: import('@roomfeed/client').RoomFeedError } | { outcome: 'superseded' }} WriteOutcome
 */

/**
 * The store of one room (a Pinia setup store; state unwrapped).
 * @typedef {object} RoomStore
 * @property {string} $id `${name}/${room}`, plus the options' key (storeId)
 * @property {() => void} $dispose
 * @property {string} room
 * @property {Record<string, RoomElement>} elements confirmed, with the pending writes laid over
 * @property {Record<string, number>} pending id -> writes not yet acknowledged
 * @property {Record<string, Array<{ key: string, op: string, conflicts?: any[], current?: RoomElement }>>} conflicts
 * @property {import('@roomfeed/client').Status} status
 * @property {import('@roomfeed/client').Problem | null} problem why the room cannot be followed
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
 * @property {() => void} retain hold the room (useRoom does it)
 * @property {() => void} release let it go (the last release disposes the store)
 */

/**
 * What a factory's setup is given.
 * @typedef {object} RoomStoreContext
 * @property {string} id the store's id
 * @property {string} room
 * @property {Record<string, any>} options as given to useX(room, options)
 * @property {import('pinia').Pinia} pinia
 * @property {Record<string, any>} kept outlives hot updates of the store (a feed, a counter…); gone with the store
 * @property {(off: () => any) => void} listen an unsubscribe function: called when the next (hot) setup runs or the store goes
 * @property {(fn: () => void) => void} onHold called when the first holder takes the store (hold: true)
 * @property {(fn: () => void) => void} onDispose called when the store goes (the last holder let go, or $dispose())
 */

/**
 * @template S
 * @typedef {{ (room: string, options?: Record<string, any>, pinia?: import('pinia').Pinia): S, storeName: string, definition: (id: string) => any, ids: () => string[], release: (store: { $id: string }) => void }} UseRoomStoreFactory
 */

/**
 * @typedef {{ (room: string, pinia?: import('pinia').Pinia): RoomStore, storeName: string, definition: (id: string) => any, ids: () => string[], release: (store: { $id: string }) => void, factory: UseRoomStoreFactory<RoomStore> }} UseRoomStore
 */

const MARK = Symbol.for('roomfeed.pinia.roomStore')

// ---- identity ----------------------------------------------------------------------

/** Data: a primitive, or an array or a plain object (not a reactive proxy, not markRaw'd) of data. */
function isPlain(v) {
  if (v === null || typeof v !== 'object' || isProxy(v) || v.__v_skip) return false
  if (Array.isArray(v)) return true
  const proto = Object.getPrototypeOf(v)
  return (proto === Object.prototype || proto === null) && !(Symbol.toStringTag in v)
}

/** Serialisable all the way down (an object holding a function, such as a connection, is not). */
function isData(v) {
  if (v === undefined || v === null || (typeof v !== 'object' && typeof v !== 'function')) return typeof v !== 'function'
  return isPlain(v) && Object.values(v).every(isData)
}

/**
 * Split options into their data (serialisable: primitives, arrays and plain
 * objects of them), as a stable JSON (keys sorted, undefined left out), and
 * the objects told apart by identity (a connection, an outbox, a store, a
 * function, a class…), each with its path ("/outbox").
 */
function splitOptions(options) {
  const objects = []
  const walk = (v, path) => {
    if (v === undefined) return undefined
    if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return v
    if (path && !isData(v)) {
      objects.push([path, v])
      return undefined
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, `${path}/${i}`) ?? null)
    const out = {}
    for (const k of Object.keys(v).sort()) {
      const w = walk(v[k], `${path}/${k}`)
      if (w !== undefined) out[k] = w
    }
    return out
  }
  const data = JSON.stringify(walk(options ?? {}, '') ?? {})
  return { data, objects }
}

/**
 * The stable key of options: the JSON of their data, then the paths of the
 * objects among them (compared by identity, see storeId). '{}' for none.
 * @param {Record<string, any>} [options]
 */
export function optionsKey(options = {}) {
  const { data, objects } = splitOptions(options)
  return objects.length ? `${data} ${objects.map(([p]) => p).join(' ')}` : data
}

// pinia -> Map(id -> record of a store made by a factory)
const live = new WeakMap()

function registry(pinia) {
  if (!live.has(pinia)) live.set(pinia, new Map())
  return live.get(pinia)
}

const sameObjects = (a, b) => a.length === b.length && a.every(([p, v], i) => p === b[i][0] && v === b[i][1])

/**
 * The id of the store of `room` made by `name` with `options` in pinia:
 * `${name}/${room}`, then `?` and the stable JSON of the options' data when
 * they hold any (e.g. `room/w1?{"signals":["cursor"]}`), then `#2`, `#3`…
 * when the objects among them (compared by identity) are not those of a
 * store of that name, room and data that exists already: the first set has
 * no suffix. The same options answer the same id.
 * @param {string} name
 * @param {string} room
 * @param {Record<string, any>} [options]
 * @param {import('pinia').Pinia} [pinia]
 */
export function storeId(name, room, options = {}, pinia = getActivePinia()) {
  const { data, objects } = splitOptions(options)
  const base = data === '{}' ? `${name}/${room}` : `${name}/${room}?${data}`
  const reg = pinia ? registry(pinia) : new Map()
  for (let n = 1; ; n++) {
    const id = n === 1 ? base : `${base}#${n}`
    const rec = reg.get(id)
    if (!rec || sameObjects(rec.objects, objects)) return id
  }
}

// ---- the factory ----------------------------------------------------------------------

function finish(pinia, id) {
  const reg = registry(pinia)
  const rec = reg.get(id)
  if (!rec) return
  reg.delete(id)
  rec.unbind()
  rec.onDispose?.()
  delete pinia.state.value[id]
}

function retain(pinia, id) {
  const rec = registry(pinia).get(id)
  if (!rec) return
  rec.holders += 1
  if (rec.holders === 1) rec.onHold?.()
}

function release(pinia, id) {
  const rec = registry(pinia).get(id)
  if (!rec || rec.holders === 0) return
  rec.holders -= 1
  if (rec.holders > 0) return
  const store = pinia._s.get(id)
  if (store) store.$dispose() // its scope ends: finish()
  else finish(pinia, id)
}

/**
 * Define the stores of rooms under `name`, one per room and options.
 *
 *   export const useRoomView = defineRoomStoreFactory('view', (ctx) => {
 *     const feed = (ctx.kept.feed ??= ctx.options.hub.createFeed(ctx.room))
 *     const count = ref(feed.elements.size)
 *     ctx.listen(feed.on('change', () => (count.value = feed.elements.size)))
 *     ctx.onHold(() => feed.start())
 *     ctx.onDispose(() => feed.stop())
 *     return { count }
 *   })
 *   const view = useRoomView('w1', { hub })  // in a component: held until it unmounts
 *
 * useX(room) without options answers the room's store if one exists (a
 * child component), else the store made without options. hold: false: the
 * caller manages the store's life (no holding; $dispose() ends it).
 *
 * @template {Record<string, any>} T
 * @param {string} name
 * @param {(ctx: RoomStoreContext) => T} setup a Pinia setup store's function, given the context
 * @param {{ hold?: boolean }} [opts]
 * @returns {UseRoomStoreFactory<import('pinia').Store<string, any, any, any> & import('pinia')._UnwrapAll<T>>}
 */
export function defineRoomStoreFactory(name, setup, { hold = true } = {}) {
  if (!name || typeof name !== 'string') throw new TypeError('defineRoomStoreFactory: name must be a non-empty string')
  const definitions = new Map() // id -> { useStore, room, options }

  function definition(id, room, options) {
    if (!definitions.has(id)) {
      const useStore = defineStore(id, () => {
        const pinia = getActivePinia()
        const reg = registry(pinia)
        let rec = reg.get(id)
        if (!rec) {
          // Made without useX (a hot update of a store whose record went): start one.
          rec = newRecord(room, options)
          reg.set(id, rec)
        }
        rec.unbind() // the listeners of an earlier setup of this store (HMR)
        rec.offs = []
        if (!rec.setUp) {
          rec.setUp = true
          onScopeDispose(() => finish(pinia, id))
        }
        /** @type {RoomStoreContext} */
        // The record's options: one id may stand for other objects in another Pinia (a test's).
        const ctx = {
          id,
          room: rec.room,
          options: rec.options,
          pinia,
          kept: rec.kept,
          listen: (off) => void rec.offs.push(off),
          onHold: (fn) => void (rec.onHold = fn),
          onDispose: (fn) => void (rec.onDispose = fn),
        }
        return setup(ctx)
      })
      definitions.set(id, { useStore, room, options })
    }
    return definitions.get(id).useStore
  }

  function newRecord(room, options) {
    const rec = { name, room, options, objects: splitOptions(options).objects, holders: 0, kept: {}, offs: [], setUp: false, onHold: null, onDispose: null }
    rec.unbind = () => {
      for (const off of rec.offs.splice(0)) off()
    }
    return rec
  }

  function existing(pinia, room) {
    const found = [...registry(pinia)].filter(([, rec]) => rec.name === name && rec.room === room)
    if (found.length === 1) return found[0][0]
    const plain = found.find(([id]) => id === `${name}/${room}`)
    if (plain) return plain[0]
    if (found.length > 1) throw new Error(`${name}: the stores of room ${room} were made with other options; give the options`)
    return null
  }

  function useX(room, options, pinia = getActivePinia()) {
    if (!room || typeof room !== 'string') throw new TypeError(`${name}: room must be a non-empty string`)
    if (!pinia) throw new Error(`${name}: no active Pinia (app.use(pinia) or setActivePinia)`)
    const reg = registry(pinia)
    let id = options === undefined ? existing(pinia, room) : null
    const opts = options ?? (id ? reg.get(id).options : {})
    id ??= storeId(name, room, opts, pinia)
    if (!reg.has(id)) reg.set(id, newRecord(room, opts))
    const store = definition(id, room, opts)(pinia)
    if (hold) {
      retain(pinia, id)
      if (getCurrentScope()) onScopeDispose(() => release(pinia, id))
    }
    return store
  }

  useX[MARK] = true
  useX.storeName = name
  useX.definition = (id) => definitions.get(id)?.useStore
  useX.define = definition
  /** The ids of the stores defined through this factory (for HMR). */
  useX.ids = () => [...definitions.keys()]
  useX.specOf = (id) => definitions.get(id)
  /** Let go of a store held outside an effect scope (works with stubbed actions). */
  useX.release = (store) => release(store._p ?? getActivePinia(), store.$id)
  return /** @type {any} */ (useX)
}

/**
 * The hot-update handler of a module that exports room store factories or
 * definitions:
 *   if (import.meta.hot) import.meta.hot.accept(acceptRoomStoreHMR(useRoom, import.meta.hot))
 * Every store of useRoom in use takes the new module's setup (Pinia's
 * acceptHMRUpdate); the state, `kept` and the running feeds stay.
 * @param {any} useRoom a defineRoomStore or defineRoomStoreFactory result
 * @param {any} hot import.meta.hot
 * @returns {(newModule: Record<string, any>) => void}
 */
export function acceptRoomStoreHMR(useRoom, hot) {
  const factory = useRoom.factory ?? useRoom
  return (newModule) => {
    for (const exported of Object.values(newModule ?? {})) {
      const next = exported?.factory ?? exported
      if (!next?.[MARK] || next.storeName !== factory.storeName) continue
      for (const id of factory.ids()) {
        const { room, options } = factory.specOf(id)
        // A definition's own options (defineRoomStore) are the new module's.
        const opts = exported?.factory ? exported.options : options
        acceptHMRUpdate(factory.definition(id), hot)({ useStore: next.define(id, room, opts) })
      }
    }
  }
}

// ---- one feed per connection and room, shared by the stores that follow it ----------

const feeds = new WeakMap() // hub -> Map(room -> { feed, users, running })

/**
 * The room client of `room` on hub, shared by every store that follows it
 * (one connection follows a room once): signal and message names and
 * presence are the union of what the users asked for. start() and stop()
 * are counted.
 */
function sharedFeed(hub, room, { signals = [], messages = [], presence = true }) {
  if (!feeds.has(hub)) feeds.set(hub, new Map())
  const map = feeds.get(hub)
  let shared = map.get(room)
  if (!shared) {
    shared = { feed: hub.createFeed(room, { signals: [...signals], messages: [...messages], presence }), users: 0 }
    map.set(room, shared)
  } else {
    // Another user of the room: the feed listens to its names too.
    const f = shared.feed
    const before = f._signalNames.length + f._messageNames.length + Number(f._presenceOn)
    for (const n of signals) if (!f._signalNames.includes(n)) f._signalNames.push(n)
    for (const n of messages) if (!f._messageNames.includes(n)) f._messageNames.push(n)
    if (presence) f._presenceOn = true
    const after = f._signalNames.length + f._messageNames.length + Number(f._presenceOn)
    if (after > before && f._running) hub._scheduleSync?.() // the open stream listens to them
  }
  return {
    feed: shared.feed,
    start() {
      if (shared.users++ === 0) shared.feed.start()
    },
    stop() {
      if (shared.users === 0) return
      if (--shared.users === 0) {
        shared.feed.stop()
        map.delete(room)
      }
    },
  }
}

// ---- the ready-made room store ----------------------------------------------------------

function overlay(el, entry) {
  if (entry.op === 'create' || entry.op === 'put') return { ...(el ?? {}), id: entry.id, kind: entry.kind, data: entry.data, version: el?.version ?? 0 }
  if (entry.op === 'patch') return el ? { ...el, data: mergePatch(el.data ?? {}, entry.patch) } : null
  return null // delete
}

/**
 * Define the stores of rooms under `name` on a connection: useRoom(room).
 * The options are part of the stores' identity: another definition of the
 * same name with other options makes other stores (other ids); the same
 * options answer the same stores.
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
  const factory = defineRoomStoreFactory(name, (ctx) => setupRoom(ctx, hub))

  /**
   * The store of `room`, held by the calling component until it unmounts
   * (outside a component: until store.release()).
   * @param {string} room
   * @param {any} [pinia]
   * @returns {RoomStore}
   */
  function useRoom(room, pinia = getActivePinia()) {
    return /** @type {RoomStore} */ (/** @type {unknown} */ (factory(room, options, pinia)))
  }
  useRoom.storeName = name
  useRoom.factory = factory
  useRoom.options = options
  useRoom.definition = factory.definition
  useRoom.ids = factory.ids
  useRoom.release = factory.release
  return /** @type {UseRoomStore} */ (/** @type {unknown} */ (useRoom))
}

function setupRoom(ctx, hub) {
  const { room, options, kept, pinia, id } = ctx
  const { outbox = null, signals = [], messages = [], presence = true } = options
  kept.shared ??= sharedFeed(hub, room, { signals, messages, presence })
  const feed = kept.shared.feed

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
  for (const off of [
    feed.on('status', (s) => (status.value = s)),
    feed.on('problem', (p) => (problem.value = p)),
    feed.on('presence', (list) => (people.value = [...list])),
    feed.on('snapshot', () => {
      loaded.value = true
      rebuild()
    }),
    feed.on('change', rebuild),
    feed.on('event', () => (cursor.value = feed.cursor)),
  ])
    ctx.listen(off)
  if (outbox) {
    ctx.listen(
      outbox.on('ack', (a) => {
        if (a.room === room) feed.applyAnswer({ element: a.element, seq: a.seq, deleted: a.deleted, key: a.entry?.key })
      }),
    )
    ctx.listen(outbox.on('change', ({ room: r }) => r === room && rebuild()))
    ctx.listen(outbox.on('refused', ({ room: r, error: err }) => r === room && (error.value = err)))
  }
  ctx.onHold(() => {
    outbox?.start().then(rebuild)
    kept.shared.start()
  })
  ctx.onDispose(() => kept.shared.stop())
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
    /** Hold the room once more (useRoom does it). An action: stubbed by createTestingPinia(); useRoom is not. */
    retain: () => retain(pinia, id),
    /** Let go of the room: the last holder stops the feed and disposes the store. */
    release: () => release(pinia, id),
  }
}

// The room store: one Pinia setup store per room, built on a room client:
// a RoomFeed, or with { hub } the hub's HubRoom (same API).
//
// `elements` is what the user sees: the confirmed server state (kept by the
// room client) with this window's pending writes laid over it. A write applies
// at once (optimistic); when the server answers, the overlay is dropped and
// the confirmed state already holds the server's element. When the server
// refuses (409/412, 404) or cannot be reached, the overlay is dropped too,
// which rolls the element back, and `error` says what happened. The feed's
// own echo of a write is recognised (Op-ID and per-element seq) and never
// applied twice. The EventSource stays inside the RoomFeed, or, with
// { hub }, in the page's one FeedHub shared by every room store.
//
// start()/stop() count their callers (the open world and a pinned-worlds
// sidebar may follow the same room): the feed stops with the last stop().

import { computed, ref } from 'vue'
import { defineStore } from 'pinia'
import { RoomFeed, mergePatch } from '@/lib/roomfeed.js'

/** Kinds listed first, in this order; others follow alphabetically. */
export const KNOWN_KINDS = ['character', 'place', 'item']

function kindRank(kind) {
  const i = KNOWN_KINDS.indexOf(kind)
  return i === -1 ? KNOWN_KINDS.length : i
}

function displayName(el) {
  return String(el?.data?.name ?? '')
}

function randomSuffix(n) {
  const bytes = new Uint8Array(n)
  globalThis.crypto.getRandomValues(bytes)
  return [...bytes].map((b) => (b % 36).toString(36)).join('')
}

/**
 * A fresh element id for a kind, e.g. "character-mfa3k2x1q7zp": the time part
 * makes ids sort in creation order, the random part keeps them unique.
 */
export function newElementId(kind) {
  const prefix = String(kind || 'el').replace(/[^A-Za-z0-9_-]/g, '').slice(0, 24) || 'el'
  return `${prefix}-${Date.now().toString(36).padStart(9, '0')}${randomSuffix(4)}`
}

function describeFailure(err, what) {
  if (err?.isConflict) {
    return `${what} was changed by someone else in the meantime; your change was undone.`
  }
  if (err?.status === 404) return `${what} no longer exists; your change was undone.`
  if (!err?.status) return `Network problem: ${what.toLowerCase()} was not saved, your change was undone.`
  return `${what} was not saved (${err.message}); your change was undone.`
}

function setupRoomStore(roomId, feedOptions) {
  const { hub, ...options } = feedOptions
  const feed = hub ? hub.createFeed(roomId, options) : new RoomFeed({ room: roomId, ...options })

  const room = ref(roomId)
  const elements = ref({}) // id -> element as displayed
  const pending = ref({}) // id -> number of writes in flight
  const cursor = ref('')
  const status = ref(feed.status)
  const error = ref('')
  const errorCode = ref('')
  const loaded = ref(false)
  const people = ref([]) // who is in the room now (presence)
  const following = ref(false) // start() callers outstanding
  let users = 0

  const overlays = new Map() // id -> [{ opId, type, ... }]
  const queues = new Map() // id -> promise of the last write (writes to one id go in order)
  const ownVersions = new Map() // id -> Set of versions our own writes produced

  const byKind = computed(() => {
    const groups = new Map()
    for (const el of Object.values(elements.value)) {
      if (!groups.has(el.kind)) groups.set(el.kind, [])
      groups.get(el.kind).push(el)
    }
    return [...groups.entries()]
      .sort(([a], [b]) => kindRank(a) - kindRank(b) || a.localeCompare(b))
      // By id, not by name: a card never moves while someone types in it
      // (ids made here start with their creation time).
      .map(([kind, list]) => ({ kind, elements: list.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)) }))
  })

  const count = computed(() => Object.keys(elements.value).length)

  function view(id) {
    let el = feed.elements.get(id) ?? null
    for (const op of overlays.get(id) ?? []) {
      if (op.type === 'put') el = { ...op.element, version: el?.version ?? 0, updated_at: el?.updated_at }
      else if (op.type === 'patch') el = el ? { ...el, data: mergePatch(el.data ?? {}, op.patch) } : null
      else if (op.type === 'delete') el = null
    }
    return el
  }

  function refresh(id) {
    const el = view(id)
    if (el) elements.value[id] = el
    else if (id in elements.value) delete elements.value[id]
    const n = overlays.get(id)?.length ?? 0
    if (n) pending.value[id] = n
    else if (id in pending.value) delete pending.value[id]
  }

  function rebuild() {
    const next = {}
    for (const id of new Set([...feed.elements.keys(), ...overlays.keys()])) {
      const el = view(id)
      if (el) next[id] = el
    }
    elements.value = next
  }

  feed.on('status', (s) => {
    status.value = s
  })
  feed.on('snapshot', (snap) => {
    cursor.value = snap.cursor
    loaded.value = true
    rebuild()
  })
  feed.on('change', ({ id }) => refresh(id))
  feed.on('presence', (list) => {
    people.value = list
  })
  feed.on('event', () => {
    cursor.value = feed.cursor
  })

  function addOverlay(id, op) {
    if (!overlays.has(id)) overlays.set(id, [])
    overlays.get(id).push(op)
    refresh(id)
  }

  function dropOverlay(id, op) {
    const list = overlays.get(id)
    if (list) {
      const i = list.indexOf(op)
      if (i !== -1) list.splice(i, 1)
      if (!list.length) overlays.delete(id)
    }
    refresh(id)
  }

  function enqueue(id, fn) {
    const prev = queues.get(id) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    queues.set(id, next)
    next.finally(() => {
      if (queues.get(id) === next) queues.delete(id)
    })
    return next
  }

  function noteOwnVersion(id, version) {
    if (typeof version !== 'number') return
    if (!ownVersions.has(id)) ownVersions.set(id, new Set())
    ownVersions.get(id).add(version)
  }

  /** The If-Match version for a write based on `base`: skips versions our own earlier writes made. */
  function effectiveBase(id, base) {
    if (base === undefined || base === null) return base
    let v = base
    const own = ownVersions.get(id)
    while (own?.has(v + 1)) v += 1
    return v
  }

  function fail(err, what) {
    error.value = describeFailure(err, what)
    errorCode.value = err?.code ?? 'error'
  }

  function label(id) {
    const el = view(id) ?? feed.elements.get(id)
    const name = displayName(el)
    return name ? `"${name}"` : 'The element'
  }

  async function write(id, op, send, what) {
    addOverlay(id, op)
    return enqueue(id, async () => {
      try {
        const res = await send()
        if (res.element && !op.deleted) noteOwnVersion(id, res.element.version)
        return res
      } catch (err) {
        fail(err, what)
        return null
      } finally {
        dropOverlay(id, op)
      }
    })
  }

  // ---- actions ------------------------------------------------------------

  function start() {
    users += 1
    following.value = true
    return feed.start()
  }

  function stop() {
    users = Math.max(0, users - 1)
    if (users > 0) return
    following.value = false
    feed.stop()
  }

  /** Create an element (optimistic). Resolves to the server's element, or null on failure. */
  function create(kind, data = {}, { id = newElementId(kind) } = {}) {
    const element = { id, kind, version: 0, data }
    const op = { type: 'put', element }
    const what = data.name ? `New ${kind} "${data.name}"` : `New ${kind}`
    return write(id, op, () => feed.put(id, { kind, data }, { ifNoneMatch: true }), what).then(
      (r) => r?.element ?? null,
    )
  }

  /**
   * Merge-patch fields of an element's data (null removes a field).
   * baseVersion: the version the user edited; defaults to the version shown now.
   * The write fails with a conflict if someone else changed the element since.
   */
  function edit(id, fields, { baseVersion } = {}) {
    const shown = feed.elements.get(id)?.version
    const base = baseVersion ?? shown
    const what = label(id)
    const op = { type: 'patch', patch: fields }
    return write(id, op, () => feed.patch(id, fields, { ifMatch: effectiveBase(id, base) }), what).then(
      (r) => r?.element ?? null,
    )
  }

  function rename(id, name, opts) {
    return edit(id, { name }, opts)
  }

  /** Delete an element (optimistic). With baseVersion, only if nobody changed it since. */
  function remove(id, { baseVersion } = {}) {
    const what = label(id)
    const op = { type: 'delete', deleted: true }
    return write(id, op, () => feed.delete(id, { ifMatch: effectiveBase(id, baseVersion) }), what).then(
      (r) => r !== null,
    )
  }

  function clearError() {
    error.value = ''
    errorCode.value = ''
  }

  return {
    room,
    elements,
    pending,
    cursor,
    status,
    error,
    errorCode,
    loaded,
    people,
    following,
    byKind,
    count,
    start,
    stop,
    create,
    edit,
    rename,
    remove,
    clearError,
  }
}

/**
 * The store of one room: useRoomStore('w1'). feedOptions (first call only)
 * go to the RoomFeed, e.g. { baseUrl, EventSource, fetch } in tests, or
 * { token } (a JWT, a function or a source from lib/token.js; the default
 * reads VITE_ROOMFEED_TOKEN or VITE_ROOMFEED_TOKEN_ENDPOINT), or { hub }
 * (a FeedHub: the room is a HubRoom on the hub's one multiplexed stream;
 * the other options go to hub.createFeed).
 */
export function useRoomStore(roomId, feedOptions = {}) {
  return defineStore(`room/${roomId}`, () => setupRoomStore(roomId, feedOptions))()
}

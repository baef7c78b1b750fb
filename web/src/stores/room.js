// The room store: one Pinia setup store per room, built on a room client (a
// RoomFeed, or with { hub } the hub's HubRoom: same API) and the page's
// outbox (@roomfeed/client's Outbox; with { outbox } the session's, shared by every
// room and tab; else a private one in memory).
//
// `elements` is what the user sees: the confirmed server state (kept by the
// room client) with the outbox's pending writes of this room laid over it,
// in order. The overlay is laid again on every snapshot and event, so a
// reset or a reload loses nothing; an entry leaves the overlay only once the
// server acknowledged it (its answer is applied to the confirmed state in
// the same tick) or refused it for good (`error` says why, in words).
// Offline, 5xx and 429 keep the writes: `outbox.blocked` says why they wait.
// A conflict (someone else changed the same field first) is listed in
// `conflicts` with theirs and mine; keepMine()/takeTheirs() resolve it.
// `drafts` are other people's typing (@roomfeed/client's Drafts); typing()/endTyping()
// share ours. The EventSource stays inside the room client, or, with
// { hub }, in the page's one FeedHub shared by every room store.
//
// start()/stop() count their callers (the open world and a pinned-worlds
// sidebar may follow the same room): the feed stops with the last stop().

import { computed, ref } from 'vue'
import { acceptRoomStoreHMR, defineRoomStoreFactory } from '@roomfeed/pinia'
import { appConfig, configTokenSource } from '@/config.js'
import { DRAFT_SIGNAL, Drafts, Outbox, RoomFeed, describeProblem, memoryStorage, mergePatch } from '@roomfeed/client'

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

/** A write refused for good, in words: what happened and what the user can do. */
export function describeRefusal(err, what) {
  if (err?.status === 404) return `${what} no longer exists (someone deleted it); your change could not be saved.`
  if (err?.code === 'already_exists') return `${what} already exists; your copy was not saved.`
  if (err?.status === 403) return `You may not change this world: ${what.toLowerCase()} was not saved. Ask its owner for write access.`
  if (err?.status === 413) return `${what} is too large to save; make it smaller and try again.`
  return `${what} was not saved: the server refused it (${err?.message || err?.code}).`
}

/** The room client, the outbox and the drafts of a room store: made once, kept across hot updates. */
function makeClients(roomId, feedOptions) {
  const { hub, outbox: sharedOutbox, cache = null, ...options } = feedOptions
  const clientOptions = { signals: [DRAFT_SIGNAL], ...options }
  const feed = hub
    ? hub.createFeed(roomId, clientOptions)
    : new RoomFeed({ room: roomId, baseUrl: appConfig().serverUrl, token: configTokenSource(), ...clientOptions })
  const outbox =
    sharedOutbox ??
    new Outbox({
      baseUrl: feed.baseUrl,
      fetch: feed.endpoint.fetch,
      token: feed.endpoint.tokens,
      client: () => feed.clientName, // the write's actor in the server's open mode
      storage: memoryStorage(),
      locks: null,
      channel: null,
      window: options.window,
      isOnline: options.isOnline,
      backoff: options.backoff,
    })
  const drafts = new Drafts({ room: feed })
  return { feed, outbox, sharedOutbox, drafts, cache, users: 0, cached: null, saveTimer: null }
}

/** The setup of a room store (a @roomfeed/pinia factory setup: ctx.room, ctx.options, ctx.kept…). */
export function setupRoomStore(ctx) {
  const roomId = ctx.room
  const k = (ctx.kept.clients ??= makeClients(roomId, ctx.options))
  const { feed, outbox, sharedOutbox, drafts, cache } = k
  // Listeners go through ctx.listen: a hot update's setup takes them over.
  const on = (emitter, name, fn) => ctx.listen(emitter.on(name, fn))
  ctx.onDispose(() => {
    clearTimeout(k.saveTimer)
    drafts.close()
    feed.stop()
    if (!sharedOutbox) outbox.stop()
  })

  const room = ref(roomId)
  const elements = ref({}) // id -> element as displayed
  const pending = ref({}) // id -> number of writes not yet saved
  const conflicts = ref({}) // id -> [{ key, op, conflicts, current, delete }]
  const cursor = ref('')
  const status = ref(feed.status)
  const problem = ref(null) // why the feed cannot be followed: { status, code, title, action }
  const error = ref('')
  const errorCode = ref('')
  const loaded = ref(false)
  const people = ref([]) // who is in the room now (presence)
  const remoteDrafts = ref({}) // id -> field -> [{ person, value }]
  const outboxState = ref({ pending: 0, conflicts: 0, sending: false, blocked: null })
  const following = ref(false) // start() callers outstanding
  const fromCache = ref(false) // showing the copy saved on this device (no snapshot yet)
  // Kept in k across hot updates: users (start() callers), cached (id -> element of the
  // saved copy, until the first snapshot), saveTimer.

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

  /** Why the outbox waits, in words (null when it does not). */
  const blocked = computed(() => {
    const b = outboxState.value.blocked
    if (!b || !outboxState.value.pending) return null
    return { ...describeProblem(b), status: b.status, code: b.code, until: b.until ?? null }
  })

  // ---- the view: confirmed state + pending writes -----------------------------------

  function pendingOf(id) {
    return outbox.pending(roomId).filter((e) => e.id === id)
  }

  /** The confirmed elements: the room client's, or the saved copy before the first snapshot. */
  function confirmed() {
    return k.cached ?? feed.elements
  }

  function view(id) {
    let el = confirmed().get(id) ?? null
    for (const e of pendingOf(id)) {
      if (e.op === 'create' || e.op === 'put') {
        el = { ...(el ?? {}), id, kind: e.kind, data: e.data, version: el?.version ?? 0 }
      } else if (e.op === 'patch') {
        el = el ? { ...el, data: mergePatch(el.data ?? {}, e.patch) } : null
      } else if (e.op === 'delete') {
        el = null
      }
    }
    return el
  }

  function refresh(id) {
    const el = view(id)
    if (el) elements.value[id] = el
    else if (id in elements.value) delete elements.value[id]
  }

  function rebuild() {
    const ids = new Set([...confirmed().keys(), ...outbox.pending(roomId).map((e) => e.id)])
    const next = {}
    for (const id of ids) {
      const el = view(id)
      if (el) next[id] = el
    }
    elements.value = next
    const p = {}
    for (const e of outbox.pending(roomId)) p[e.id] = (p[e.id] ?? 0) + 1
    pending.value = p
    const c = {}
    for (const e of outbox.conflicts(roomId)) {
      ;(c[e.id] ??= []).push({ key: e.key, op: e.op, ...e.conflict })
    }
    conflicts.value = c
    outboxState.value = outbox.state(roomId)
  }

  on(feed, 'status', (s) => {
    status.value = s
    // The feed is live again after an outage (the node restarted, the
    // browser stayed online): writes waiting out their backoff after a
    // network error or a 5xx go now; a 429 keeps its Retry-After.
    if (s === 'live') outbox.reconnected(roomId)
  })
  on(feed, 'problem', (p) => {
    problem.value = p ? { ...p, ...describeProblem(p) } : null
  })
  on(feed, 'snapshot', (snap) => {
    cursor.value = snap.cursor
    loaded.value = true
    k.cached = null
    fromCache.value = false
    rebuild()
    saveSoon()
  })
  on(feed, 'change', ({ id }) => {
    refresh(id)
    saveSoon()
  })

  /** Keep the confirmed state on this device (debounced), for a page opened offline. */
  function saveSoon() {
    if (!cache || k.saveTimer !== null) return
    k.saveTimer = setTimeout(() => {
      k.saveTimer = null
      if (loaded.value) cache.save(roomId, { cursor: feed.cursor, elements: [...feed.elements.values()] })
    }, 300)
  }

  async function loadCached() {
    const copy = await cache?.load(roomId)
    if (!copy || loaded.value) return
    k.cached = new Map(copy.elements.map((el) => [el.id, el]))
    fromCache.value = true
    rebuild()
  }
  on(feed, 'presence', (list) => {
    people.value = list
  })
  on(feed, 'event', () => {
    cursor.value = feed.cursor
  })

  on(outbox, 'ack', (a) => {
    if (a.room !== roomId) return
    // The answer joins the confirmed state while the entry is still laid
    // over it: the card never shows the old value in between.
    feed.applyAnswer({ element: a.element, seq: a.seq, deleted: a.deleted, key: a.entry?.key })
    if (k.cached && a.element?.id) {
      // Before the first snapshot the saved copy is what is shown: it learns the answer too.
      if (a.deleted) k.cached.delete(a.element.id)
      else k.cached.set(a.element.id, a.element)
    }
  })
  on(outbox, 'change', ({ room: r }) => {
    if (r === roomId) rebuild()
  })
  on(outbox, 'refused', ({ room: r, entry, error: err }) => {
    if (r !== roomId) return
    error.value = describeRefusal(err, label(entry))
    errorCode.value = err?.code ?? 'error'
  })

  on(drafts, 'change', (list) => {
    const next = {}
    for (const d of list) {
      next[d.id] ??= {}
      ;(next[d.id][d.field] ??= []).push({ person: d.person, value: d.value })
    }
    remoteDrafts.value = next
  })

  function label(entry) {
    const el = feed.elements.get(entry.id) ?? (entry.data ? { data: entry.data } : null)
    const name = displayName(el)
    if (entry.op === 'create') return name ? `New ${entry.kind} "${name}"` : `New ${entry.kind}`
    return name ? `"${name}"` : 'The element'
  }

  function confirmedVersion(id) {
    return confirmed().get(id)?.version ?? 0
  }

  /** Enqueue a write; resolves to the server's element (null when refused or in conflict). */
  async function write(spec) {
    const entry = await outbox.enqueue(roomId, spec)
    const r = await outbox.settled(entry.key)
    return r.outcome === 'ack' ? (spec.op === 'delete' ? true : r.element) : spec.op === 'delete' ? false : null
  }

  // ---- actions ------------------------------------------------------------

  function start() {
    k.users += 1
    following.value = true
    outbox.start().then(rebuild)
    if (k.users === 1 && !loaded.value) loadCached()
    return feed.start()
  }

  function stop() {
    k.users = Math.max(0, k.users - 1)
    if (k.users > 0) return
    following.value = false
    feed.stop()
    if (!sharedOutbox) outbox.stop() // a private outbox ends with its room; the page's goes on
  }

  /** Create an element (shown at once, kept until saved). Resolves to the server's element, or null. */
  function create(kind, data = {}, { id = newElementId(kind) } = {}) {
    return write({ op: 'create', id, kind, data, base: 0 })
  }

  /**
   * Merge-patch fields of an element's data (null removes a field).
   * baseVersion: the version the user started from (default: the confirmed
   * one). Someone else's change since is merged by the server, or becomes a
   * conflict the user resolves.
   */
  function edit(id, fields, { baseVersion } = {}) {
    return write({ op: 'patch', id, patch: fields, base: baseVersion ?? confirmedVersion(id) })
  }

  function rename(id, name, opts) {
    return edit(id, { name }, opts)
  }

  /** Replace an element's kind and data (PUT), based on baseVersion. */
  function replace(id, { kind, data }, { baseVersion } = {}) {
    return write({ op: 'put', id, kind, data, base: baseVersion ?? confirmedVersion(id) })
  }

  /** Delete an element, only if nobody changed it since baseVersion (default: the confirmed version). */
  function remove(id, { baseVersion } = {}) {
    return write({ op: 'delete', id, base: baseVersion ?? confirmedVersion(id) })
  }

  function conflictEntry(key) {
    return outbox.conflicts(roomId).find((e) => e.key === key)
  }

  /** Resolve a conflict with the user's change, sent again on the version shown now. */
  function keepMine(key) {
    const rec = conflictEntry(key)
    if (!rec) return Promise.resolve(null)
    const version = Math.max(confirmedVersion(rec.id), rec.conflict?.current?.version ?? 0)
    return outbox.keepMine(key, { version })
  }

  /** Resolve a conflict with their version (the user's other changes are still sent). */
  function takeTheirs(key) {
    const rec = conflictEntry(key)
    if (!rec) return Promise.resolve(null)
    const version = Math.max(confirmedVersion(rec.id), rec.conflict?.current?.version ?? 0)
    return outbox.takeTheirs(key, { version })
  }

  /** Send the waiting writes now, whatever the backoff says. */
  function retryNow() {
    return outbox.retryNow(roomId)
  }

  const typingGen = new Map()

  /** The user is typing value into field of element id: the others see it live. */
  function typing(id, field, value) {
    const k = `${id}\0${field}`
    typingGen.set(k, (typingGen.get(k) ?? 0) + 1)
    drafts.typing(id, field, value)
  }

  /**
   * The user left the field. after: the write it committed, if any: the mark
   * goes once it is saved (so the others see the new value, not the old one,
   * when it goes), or after 1.5 s.
   */
  function endTyping(id, field, after = null) {
    const k = `${id}\0${field}`
    const gen = typingGen.get(k)
    const done = () => {
      if (typingGen.get(k) === gen) drafts.end(id, field)
    }
    if (!after) return done()
    Promise.race([Promise.resolve(after).catch(() => {}), new Promise((r) => setTimeout(r, 1500))]).then(done)
  }

  function clearError() {
    error.value = ''
    errorCode.value = ''
  }

  /** Where this room's requests go ({ baseUrl, fetch, tokens, room }): for the history store. */
  function endpoint() {
    return feed.endpoint
  }

  return {
    room,
    elements,
    pending,
    conflicts,
    cursor,
    status,
    problem,
    error,
    errorCode,
    loaded,
    people,
    remoteDrafts,
    outboxState,
    following,
    fromCache,
    byKind,
    count,
    blocked,
    start,
    stop,
    create,
    edit,
    rename,
    replace,
    remove,
    keepMine,
    takeTheirs,
    retryNow,
    typing,
    endTyping,
    clearError,
    endpoint,
  }
}

/**
 * The store of one room: useRoomStore('w1', feedOptions), made by
 * @roomfeed/pinia's store factory like any other user's. feedOptions go to
 * the RoomFeed, e.g. { baseUrl, EventSource, fetch } in tests, or { token }
 * (a JWT, a function or a token source; default: the app's configuration,
 * config.js), or { hub } (a FeedHub: the room is a HubRoom on the hub's one
 * multiplexed stream; the other options go to hub.createFeed), { outbox }
 * (the page's Outbox; default: a private one in memory) and { cache } (the
 * last state kept on this device, shown before the first snapshot).
 *
 * The options are part of the store's identity: other options give another
 * store (its id says so: see @roomfeed/pinia's storeId), the same options
 * the same store; no options answer the room's store as made
 * (useRoomStore('w1') in a child component). The store's life is its
 * callers': start()/stop() count them, and $dispose() ends it (its feed, its
 * drafts and a private outbox stop). Hot updates keep its state and feed.
 */
export const useRoomStore = defineRoomStoreFactory('room', setupRoomStore, { hold: false })

if (import.meta.hot) import.meta.hot.accept(acceptRoomStoreHMR(useRoomStore, import.meta.hot))

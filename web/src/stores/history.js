// The history store of one room (Pinia setup store `history/<room>`): the
// element history panels, undo of this page's own changes, the list of
// deleted elements with "bring back", and the time slider's view of the
// room as of a seq. Built beside the room store (useRoomStore), which it
// reads (elements, cursor, the endpoint) and never changes: every write here
// is a direct request (a revert, or a delete for the undo of a create), and
// its event comes back through the room's feed like anyone's.
//
// Undo: the outbox's 'ack' of an entry this page enqueued (its order names
// this tab) is a change of the user, pushed on `undoStack` with the version
// it produced; restores and bring-backs made here are pushed too. undo()
// reverts the newest one to the version before it (version - 1), with
// If-Match of the version this page last produced for that element, so an
// undo never overwrites someone else's later change (409/412: said in words,
// and that element's older changes leave the stack). An undone create (or a
// re-creation, whose version before is a deletion) is a delete with If-Match.

import { computed, onScopeDispose, ref, watch } from 'vue'
import { getActivePinia } from 'pinia'
import { acceptRoomStoreHMR, defineRoomStoreFactory } from '@roomfeed/pinia'
import * as httpApi from '@/lib/history.js'
import { describeHistoryError } from '@/lib/history.js'

const PAGE = 10

function isOwn(outbox, a) {
  const tab = outbox?.tab
  const order = a?.entry?.order
  if (tab && typeof order === 'string') return order.split('.')[1] === tab
  return !a?.remote
}

function nameOf(el) {
  const n = el?.data?.name
  return typeof n === 'string' && n ? n : (el?.id ?? '')
}

export function setupHistoryStore(roomId, { room, outbox = null, api = httpApi, endpoint } = {}, ctx = null) {
  const ep = () => (endpoint ? endpoint() : room.endpoint())

  // ---- undo -----------------------------------------------------------------
  const undoStack = ref([]) // [{ id, op, version, kind, name, key }], oldest first
  const undoing = ref(false)
  const message = ref('') // the last undo/restore outcome, in words
  const lastOwn = new Map() // id -> version this page last produced

  function record(change) {
    if (typeof change.version !== 'number') return
    lastOwn.set(change.id, change.version)
    undoStack.value.push(change)
  }

  const offAck = outbox?.on?.('ack', (a) => {
    if (a.room !== roomId || !isOwn(outbox, a)) return
    const el = a.element ?? {}
    record({ id: el.id ?? a.entry?.id, op: a.entry?.op ?? 'patch', version: el.version, kind: el.kind, name: nameOf(a.deleted ? room?.elements?.[el.id] ?? el : el), key: a.entry?.key })
  })

  if (offAck) ctx?.listen(offAck) // a hot update's setup takes the listener over

  const canUndo = computed(() => undoStack.value.length > 0 && !undoing.value)
  const nextUndo = computed(() => undoStack.value[undoStack.value.length - 1] ?? null)

  async function undoOne(c) {
    const ifMatch = lastOwn.get(c.id) ?? c.version
    if (c.op !== 'create' && c.version > 1) {
      try {
        return await api.revertElement(ep(), c.id, c.version - 1, { ifMatch })
      } catch (err) {
        if (err?.code !== 'version_deleted') throw err
        // The change re-created the element: before it, there was none.
      }
    }
    return api.deleteElement(ep(), c.id, ifMatch)
  }

  /** Undo this page's newest change not undone yet. Resolves to true when done. */
  async function undo() {
    const c = nextUndo.value
    if (!c || undoing.value) return false
    if (outbox?.pending?.(roomId)?.length) {
      message.value = 'Your latest changes are not saved yet: undo once they are.'
      return false
    }
    undoing.value = true
    try {
      const res = await undoOne(c)
      if (typeof res.element?.version === 'number') lastOwn.set(c.id, res.element.version)
      undoStack.value = undoStack.value.filter((x) => x !== c)
      const name = c.name && c.name !== c.id ? c.name : nameOf(res.element)
      message.value = `Undone: your change of ${name && name !== c.id ? `"${name}"` : c.id} (v${c.version}).`
      return true
    } catch (err) {
      if (err?.isConflict || err?.status === 404 || err?.status === 410) {
        // That element moved on without us: its older changes cannot be undone blindly.
        undoStack.value = undoStack.value.filter((x) => x.id !== c.id)
      }
      message.value = describeHistoryError(err, 'The undo')
      return false
    } finally {
      undoing.value = false
    }
  }

  // ---- history panels ---------------------------------------------------------
  const panels = ref({}) // id -> { versions, more, loading, error, note }

  async function loadPage(id, before) {
    const { versions } = await api.fetchHistory(ep(), id, { before, limit: PAGE + 1 })
    const more = versions.length > PAGE
    return { versions: more ? versions.slice(0, PAGE) : versions, base: more ? versions[PAGE] : null, more }
  }

  /** (Re)load the newest page of an element's history. */
  async function openHistory(id, note = '') {
    panels.value[id] = { versions: [], base: null, more: false, loading: true, error: '', note }
    try {
      const page = await loadPage(id, null)
      panels.value[id] = { ...panels.value[id], ...page, loading: false }
    } catch (err) {
      panels.value[id] = { ...panels.value[id], loading: false, error: describeHistoryError(err, 'Reading the history') }
    }
  }

  /** The next page of older versions. */
  async function older(id) {
    const p = panels.value[id]
    if (!p || !p.more || p.loading) return
    const last = p.versions[p.versions.length - 1]
    p.loading = true
    try {
      const page = await loadPage(id, last.version)
      p.versions = [...p.versions, ...page.versions]
      p.base = page.base
      p.more = page.more
      p.error = ''
    } catch (err) {
      p.error = describeHistoryError(err, 'Reading older versions')
    } finally {
      p.loading = false
    }
  }

  function closeHistory(id) {
    delete panels.value[id]
  }

  /** Write version `to` of element id again, if the element is still at `current`. */
  async function restore(id, to, current) {
    try {
      const res = await api.revertElement(ep(), id, to, { ifMatch: current })
      record({ id, op: 'revert', version: res.element?.version, kind: res.element?.kind, name: nameOf(res.element), key: res.key })
      message.value = `Restored version ${to} of ${nameOf(res.element) ? `"${nameOf(res.element)}"` : id}.`
      if (panels.value[id]) await openHistory(id)
      return true
    } catch (err) {
      const words = describeHistoryError(err, 'The restore')
      if (panels.value[id]) await openHistory(id, words)
      else message.value = words
      return false
    }
  }

  // ---- deleted elements ----------------------------------------------------------
  const deletedMap = ref({}) // id -> { id, kind, version (the deletion's), seq, name, before }
  const deletedLoading = ref(false)
  const deletedError = ref('')
  const deletedPartial = ref(false) // the oldest events are trimmed: older deletes are not known
  let scanned = '0'
  let scanning = null

  const deleted = computed(() =>
    Object.values(deletedMap.value)
      .filter((d) => !room?.elements?.[d.id])
      .sort((a, b) => Number(b.seq) - Number(a.seq)),
  )

  async function scanOnce() {
    for (;;) {
      let page
      try {
        page = await api.fetchEventPage(ep(), { after: scanned, types: ['element.deleted', 'element.created'] })
      } catch (err) {
        if (err?.code !== 'history_trimmed' || err?.details?.oldest === undefined) throw err
        deletedPartial.value = true
        scanned = String(Math.max(0, Number(err.details.oldest) - 1))
        continue
      }
      for (const ev of page.events) {
        const el = ev.element ?? {}
        if (!el.id) continue
        if (ev.type === 'element.deleted') deletedMap.value[el.id] = { id: el.id, kind: el.kind, version: el.version, seq: ev.id, name: '', before: null }
        else delete deletedMap.value[el.id]
      }
      const done = page.next === scanned || Number(page.next) >= Number(page.head)
      scanned = page.next
      if (done) return
    }
  }

  async function nameDeleted() {
    for (const d of deleted.value.slice(0, 50)) {
      if (d.before) continue
      try {
        const { versions } = await api.fetchHistory(ep(), d.id, { limit: 2 })
        const cur = deletedMap.value[d.id]
        if (!cur || versions[0]?.type !== 'deleted') continue
        cur.version = versions[0].version
        cur.before = versions[1] ?? null
        cur.name = nameOf(versions[1])
      } catch {
        // The name stays unknown; "bring back" reads the history again.
      }
    }
  }

  /** Read the deleted elements from the room's events (from where the last scan stopped). */
  function loadDeleted() {
    if (scanning) return scanning
    deletedLoading.value = true
    scanning = (async () => {
      try {
        await scanOnce()
        deletedError.value = ''
        await nameDeleted()
      } catch (err) {
        deletedError.value = describeHistoryError(err, 'Reading the deleted elements')
      } finally {
        deletedLoading.value = false
        scanning = null
      }
    })()
    return scanning
  }

  /** Re-create a deleted element as it was right before its deletion. */
  async function bringBack(id) {
    try {
      const { versions } = await api.fetchHistory(ep(), id, { limit: 2 })
      const [tomb, last] = versions
      if (tomb?.type !== 'deleted' || !last) {
        message.value = tomb?.type !== 'deleted' ? 'It is no longer deleted.' : 'Its last version is no longer kept.'
        return false
      }
      const res = await api.revertElement(ep(), id, last.version, { ifMatch: tomb.version })
      record({ id, op: 'revert', version: res.element?.version, kind: res.element?.kind, name: nameOf(res.element), key: res.key })
      delete deletedMap.value[id]
      message.value = `Brought back ${nameOf(res.element) ? `"${nameOf(res.element)}"` : id}.`
      return true
    } catch (err) {
      message.value = describeHistoryError(err, 'Bringing it back')
      return false
    }
  }

  // ---- time travel -----------------------------------------------------------------
  const at = ref(null) // null: live; else { seq, elements, loading, error, oldest }
  const head = computed(() => Number(room?.cursor || 0))
  let travelGen = 0

  /** Show the room as of seq (read-only). */
  async function showAt(seq) {
    const gen = ++travelGen
    const s = Math.max(0, Math.floor(Number(seq) || 0))
    at.value = { seq: s, elements: at.value?.elements ?? [], loading: true, error: '', oldest: null }
    try {
      const snap = await api.fetchSnapshotAt(ep(), s)
      if (gen !== travelGen) return
      at.value = { seq: s, elements: snap.elements, loading: false, error: '', oldest: null }
    } catch (err) {
      if (gen !== travelGen) return
      const oldest = err?.details?.oldest !== undefined ? Number(err.details.oldest) : null
      at.value = { seq: s, elements: [], loading: false, error: describeHistoryError(err, 'Showing that moment'), oldest }
    }
  }

  function backToLive() {
    travelGen++
    at.value = null
  }

  // The deleted list follows the room while someone looks at it.
  const watchingDeleted = ref(false)
  let deletedTimer = null
  watch(
    () => room?.cursor,
    () => {
      if (!watchingDeleted.value || deletedTimer) return
      deletedTimer = setTimeout(() => {
        deletedTimer = null
        loadDeleted()
      }, 200)
    },
  )

  onScopeDispose(() => {
    offAck?.()
    clearTimeout(deletedTimer)
  })

  function clearMessage() {
    message.value = ''
  }

  return {
    undoStack,
    undoing,
    message,
    canUndo,
    nextUndo,
    undo,
    record,
    panels,
    openHistory,
    older,
    closeHistory,
    restore,
    deleted,
    deletedLoading,
    deletedError,
    deletedPartial,
    watchingDeleted,
    loadDeleted,
    bringBack,
    at,
    head,
    showAt,
    backToLive,
    clearMessage,
  }
}

/**
 * The history store of a room: useHistoryStore('w1', { room: useRoomStore('w1'), outbox }).
 * Made by @roomfeed/pinia's factory: the options are part of its identity
 * (other options, another store; the same ones, the same store), and hot
 * updates keep its state. Its life is the caller's (disposeHistoryStore).
 */
export const useHistoryStore = defineRoomStoreFactory('history', (ctx) => setupHistoryStore(ctx.room, ctx.options, ctx), { hold: false })

if (import.meta.hot) import.meta.hot.accept(acceptRoomStoreHMR(useHistoryStore, import.meta.hot))

/** End a history store with its room view: its listeners go, and its state is not kept for the next one. */
export function disposeHistoryStore(store) {
  const pinia = getActivePinia()
  store.$dispose()
  if (pinia) delete pinia.state.value[store.$id]
}

// History, time travel and undo over HTTP (README "History, time travel and
// undo"): an element's versions, the room as of a seq, a revert, a page of
// the room's events as JSON; and the pure helpers the editor shows them with
// (diffVersions: field old → new; describeHistoryError: a failure in words).
// Every call takes a room endpoint { baseUrl, fetch, tokens, room } (the room
// client's `endpoint`), so tokens and JSON errors work as for every write.

import { roomRequest } from '@roomfeed/client'

function newKey() {
  return globalThis.crypto?.randomUUID?.() ?? `undo-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`
}

const enc = encodeURIComponent

/** A page of an element's versions, newest first: { versions, next } (next: the `before` of the next page, or null). */
export async function fetchHistory(ep, id, { before = null, limit = 20 } = {}) {
  const query = { limit: String(limit) }
  if (before !== null && before !== undefined) query.before = String(before)
  const { body } = await roomRequest(ep, 'GET', `/elements/${enc(id)}/history`, { query })
  return { versions: body.versions ?? [], next: body.next ?? null }
}

/** The room as it was right after event `at`: { cursor, elements }. */
export async function fetchSnapshotAt(ep, at) {
  const { body } = await roomRequest(ep, 'GET', '/elements', { query: { at: String(at) } })
  return { cursor: String(body.cursor ?? at), elements: body.elements ?? [] }
}

/**
 * Write version `to` of element id again. ifMatch: the version the element
 * must be at now (strict). Resolves to { element, created, seq }.
 */
export async function revertElement(ep, id, to, { ifMatch, key = newKey() } = {}) {
  const headers = { 'Idempotency-Key': `"${key}"`, 'Op-ID': key }
  if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`
  const res = await roomRequest(ep, 'POST', `/elements/${enc(id)}/revert`, { body: { to_version: to }, headers })
  return { element: res.body, created: res.status === 201, seq: res.headers?.get?.('Event-ID') ?? null, key }
}

/** Delete element id if it is still at version ifMatch (the undo of a create). */
export async function deleteElement(ep, id, ifMatch, { key = newKey() } = {}) {
  const headers = { 'Idempotency-Key': `"${key}"`, 'Op-ID': key, 'If-Match': `"${ifMatch}"` }
  const res = await roomRequest(ep, 'DELETE', `/elements/${enc(id)}`, { headers })
  return { element: res.body, key }
}

/** One page of the room's events as JSON: { events, next, head }. types: event types to keep. */
export async function fetchEventPage(ep, { after = '0', limit = 5000, types = [] } = {}) {
  const params = new URLSearchParams({ format: 'json', after: String(after), limit: String(limit) })
  for (const t of types) params.append('type', t)
  const { body } = await roomRequest(ep, 'GET', `/events?${params}`)
  return { events: body.events ?? [], next: String(body.next ?? after), head: String(body.head ?? after) }
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b)
}

/**
 * What changed from version `before` (null: none) to version `after`, as a
 * list of { field, old, new, change } with change 'added' | 'removed' |
 * 'changed'; field '#kind' is the kind, '#element' the whole element (a
 * deletion or a creation from nothing). Objects are compared as a whole.
 */
export function diffVersions(before, after) {
  const out = []
  const oldData = before && before.data ? before.data : null
  const newData = after && after.data ? after.data : null
  if (after && after.type === 'deleted') return [{ field: '#element', old: oldData, new: null, change: 'removed' }]
  if (before && after && before.kind !== after.kind) out.push({ field: '#kind', old: before.kind, new: after.kind, change: 'changed' })
  const o = oldData ?? {}
  const n = newData ?? {}
  const keys = [...new Set([...Object.keys(o), ...Object.keys(n)])].sort((a, b) =>
    a === 'name' ? -1 : b === 'name' ? 1 : a < b ? -1 : a > b ? 1 : 0,
  )
  for (const k of keys) {
    if (!(k in o)) out.push({ field: k, old: undefined, new: n[k], change: 'added' })
    else if (!(k in n)) out.push({ field: k, old: o[k], new: undefined, change: 'removed' })
    else if (!same(o[k], n[k])) out.push({ field: k, old: o[k], new: n[k], change: 'changed' })
  }
  return out
}

/** A value as shown in a diff: text quoted, long values shortened. */
export function formatValue(v, max = 60) {
  if (v === undefined) return '—'
  const s = typeof v === 'string' ? `"${v}"` : JSON.stringify(v)
  return s.length > max ? `${s.slice(0, max - 1)}…` : s
}

/** One diff line in words: `name: "Aria" → "Aria B"`. */
export function diffLine(d) {
  if (d.field === '#element') return d.change === 'removed' ? 'deleted' : 'created'
  const label = d.field === '#kind' ? 'kind' : d.field
  if (d.change === 'added') return `${label}: added ${formatValue(d.new)}`
  if (d.change === 'removed') return `${label}: removed (was ${formatValue(d.old)})`
  return `${label}: ${formatValue(d.old)} → ${formatValue(d.new)}`
}

/** A failure of a history read or a revert, in words a person can act on. */
export function describeHistoryError(err, what = 'The change') {
  const code = err?.code ?? ''
  const status = err?.status ?? 0
  if (status === 409 || status === 412) {
    return `${what} was not made: someone changed this element in the meantime. Its history is shown again; look at their change and try again.`
  }
  if (code === 'history_trimmed') {
    const oldest = err?.details?.oldest
    return `The world can no longer be shown that far back (older history is no longer kept)${oldest !== undefined ? `; the oldest moment that can be shown is seq ${oldest}` : ''}.`
  }
  if (code === 'versions_trimmed') return `That version is no longer kept${err?.details?.oldest ? ` (the oldest kept is v${err.details.oldest})` : ''}.`
  if (code === 'version_deleted') return 'That version is a deletion: there is nothing to restore.'
  if (status === 404) return `${what} failed: this element no longer exists on the server.`
  if (status === 403) return `${what} was not made: you may not change this world.`
  if (status === 0) return `${what} failed: the server cannot be reached. Try again when you are back online.`
  return `${what} failed: ${err?.message || code || `HTTP ${status}`}.`
}

import { describe, expect, it } from 'vitest'
import {
  deleteElement,
  describeHistoryError,
  diffLine,
  diffVersions,
  fetchEventPage,
  fetchHistory,
  fetchSnapshotAt,
  formatValue,
  revertElement,
} from './history.js'

/** A fetch that records each request and answers from a list of [status, body, headers]. */
function recordingFetch(answers) {
  const requests = []
  const fetch = async (url, init) => {
    requests.push({ url, method: init.method, headers: init.headers, body: init.body ? JSON.parse(init.body) : undefined })
    const [status, body, headers = {}] = answers.shift()
    return new Response(body === null ? '' : JSON.stringify(body), { status, headers })
  }
  const ep = { baseUrl: 'http://h', fetch, tokens: { get: async () => null, refresh: async () => null }, room: 'w 1' }
  return { ep, requests }
}

describe('diffVersions', () => {
  const v = (version, type, kind, data) => ({ version, type, kind, data })
  it.each([
    ['a creation from nothing', null, v(1, 'created', 'character', { name: 'Aria', hp: 3 }), ['name: added "Aria"', 'hp: added 3']],
    ['a changed field', v(1, 'created', 'c', { name: 'Aria', hp: 3 }), v(2, 'updated', 'c', { name: 'Aria B', hp: 3 }), ['name: "Aria" → "Aria B"']],
    ['added and removed fields', v(1, 'created', 'c', { a: 1 }), v(2, 'updated', 'c', { b: [1, 2] }), ['a: removed (was 1)', 'b: added [1,2]']],
    ['an object compared whole', v(1, 'created', 'c', { o: { x: 1 } }), v(2, 'updated', 'c', { o: { x: 2 } }), ['o: {"x":1} → {"x":2}']],
    ['a kind change', v(1, 'created', 'item', { name: 'X' }), v(2, 'updated', 'place', { name: 'X' }), ['kind: "item" → "place"']],
    ['a deletion', v(2, 'updated', 'c', { name: 'X' }), v(3, 'deleted', 'c', null), ['deleted']],
    ['a re-creation after a deletion', v(3, 'deleted', 'c', null), v(4, 'reverted', 'c', { name: 'X' }), ['name: added "X"']],
    ['no change', v(1, 'created', 'c', { name: 'X' }), v(2, 'merged', 'c', { name: 'X' }), []],
  ])('%s', (_, before, after, want) => {
    expect(diffVersions(before, after).map(diffLine)).toEqual(want)
  })

  it('lists name first, then the other fields alphabetically', () => {
    const d = diffVersions({ kind: 'c', data: {} }, { kind: 'c', data: { z: 1, name: 'N', a: 2 } })
    expect(d.map((x) => x.field)).toEqual(['name', 'a', 'z'])
  })

  it('shortens long values', () => {
    expect(formatValue('x'.repeat(100), 20)).toHaveLength(20)
    expect(formatValue(undefined)).toBe('—')
  })
})

describe('describeHistoryError', () => {
  it.each([
    [{ status: 412, code: 'precondition_failed' }, /someone changed this element in the meantime/],
    [{ status: 409, code: 'conflict' }, /someone changed this element/],
    [{ status: 410, code: 'history_trimmed', details: { oldest: '7' } }, /oldest moment that can be shown is seq 7/],
    [{ status: 410, code: 'versions_trimmed', details: { oldest: '4' } }, /no longer kept \(the oldest kept is v4\)/],
    [{ status: 422, code: 'version_deleted' }, /a deletion/],
    [{ status: 404, code: 'not_found' }, /no longer exists/],
    [{ status: 0, code: 'network_error' }, /cannot be reached/],
  ])('%o', (err, want) => {
    expect(describeHistoryError(err)).toMatch(want)
  })
})

describe('requests', () => {
  it('reads a page of history with before and limit', async () => {
    const { ep, requests } = recordingFetch([[200, { versions: [{ version: 3 }], next: 3 }]])
    expect(await fetchHistory(ep, 'c/1', { before: 4, limit: 1 })).toEqual({ versions: [{ version: 3 }], next: 3 })
    expect(requests[0].url).toBe('http://h/rooms/w%201/elements/c%2F1/history?limit=1&before=4')
  })

  it('reads the room as of a seq, and a 410 keeps its oldest', async () => {
    const { ep, requests } = recordingFetch([
      [200, { cursor: '2', elements: [{ id: 'c1' }] }],
      [410, { error: { code: 'history_trimmed', message: 'gone', oldest: '3' } }],
    ])
    expect(await fetchSnapshotAt(ep, 2)).toEqual({ cursor: '2', elements: [{ id: 'c1' }] })
    expect(requests[0].url).toBe('http://h/rooms/w%201/elements?at=2')
    await expect(fetchSnapshotAt(ep, 0)).rejects.toMatchObject({ status: 410, code: 'history_trimmed', details: { oldest: '3' } })
  })

  it('reverts with If-Match, an Idempotency-Key and Op-ID, and tells a re-creation', async () => {
    const { ep, requests } = recordingFetch([[201, { id: 'c1', version: 4 }, { 'Event-ID': '9' }]])
    const r = await revertElement(ep, 'c1', 2, { ifMatch: 3, key: 'undo-1' })
    expect(r).toEqual({ element: { id: 'c1', version: 4 }, created: true, seq: '9', key: 'undo-1' })
    expect(requests[0]).toMatchObject({
      url: 'http://h/rooms/w%201/elements/c1/revert',
      method: 'POST',
      body: { to_version: 2 },
      headers: { 'If-Match': '"3"', 'Idempotency-Key': '"undo-1"', 'Op-ID': 'undo-1' },
    })
  })

  it('deletes with If-Match; a stale one is a conflict', async () => {
    const { ep, requests } = recordingFetch([[412, { error: { code: 'precondition_failed', message: 'stale' } }]])
    await expect(deleteElement(ep, 'i1', 1)).rejects.toMatchObject({ status: 412, isConflict: true })
    expect(requests[0]).toMatchObject({ method: 'DELETE', headers: { 'If-Match': '"1"' } })
  })

  it('reads a JSON page of events with type filters', async () => {
    const { ep, requests } = recordingFetch([[200, { room: 'w 1', events: [{ id: '5' }], next: '5', head: '9' }]])
    expect(await fetchEventPage(ep, { after: '4', limit: 10, types: ['element.deleted', 'element.created'] })).toEqual({
      events: [{ id: '5' }],
      next: '5',
      head: '9',
    })
    expect(requests[0].url).toBe('http://h/rooms/w%201/events?format=json&after=4&limit=10&type=element.deleted&type=element.created')
  })
})

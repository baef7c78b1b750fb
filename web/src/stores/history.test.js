import { beforeEach, describe, expect, it } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { reactive } from 'vue'
import { useHistoryStore } from './history.js'
import { Emitter, RoomFeedError } from '@roomfeed/client'

// An in-memory server of versions and events speaking the history contract
// (README "History, time travel and undo"): versions newest first, strict
// If-Match on reverts and deletes, 422 version_deleted, JSON event pages.
class FakeHistoryServer {
  constructor({ pageSize = 3 } = {}) {
    this.versions = new Map() // id -> [{ version, type, kind, data, seq }], oldest first
    this.events = [] // { id, type, element }
    this.oldestEvent = 1
    this.oldestAt = 0
    this.pageSize = pageSize
    this.calls = []
  }

  current(id) {
    const list = this.versions.get(id) ?? []
    return list[list.length - 1] ?? null
  }

  write(id, type, kind, data) {
    const list = this.versions.get(id) ?? []
    this.versions.set(id, list)
    const cur = list[list.length - 1]
    const seq = String(this.events.length + 1)
    const v = { version: (cur?.version ?? 0) + 1, type, kind, data, seq, actor: '', at: '2026-12-02T03:00:00Z' }
    list.push(v)
    const evType = type === 'deleted' ? 'element.deleted' : !cur || cur.type === 'deleted' ? 'element.created' : 'element.updated'
    this.events.push({ id: seq, type: evType, element: { id, kind, version: v.version, data } })
    return { id, kind, version: v.version, data }
  }

  check(id, ifMatch) {
    const cur = this.current(id)
    if (!cur) throw new RoomFeedError('not found', { status: 404, code: 'not_found' })
    if (ifMatch !== undefined && ifMatch !== cur.version) throw new RoomFeedError('precondition failed', { status: 412, code: 'precondition_failed' })
    return cur
  }

  get api() {
    return {
      fetchHistory: async (_ep, id, { before = null, limit = 20 } = {}) => {
        this.calls.push(['history', id, before, limit])
        const list = [...(this.versions.get(id) ?? [])].reverse().filter((v) => before === null || v.version < before)
        const page = list.slice(0, limit)
        return { versions: page, next: list.length > limit ? page[page.length - 1].version : null }
      },
      revertElement: async (_ep, id, to, { ifMatch } = {}) => {
        this.calls.push(['revert', id, to, ifMatch])
        const cur = this.check(id, ifMatch)
        const target = this.versions.get(id).find((v) => v.version === to)
        if (!target) throw new RoomFeedError('no such version', { status: 404, code: 'version_not_found' })
        if (target.type === 'deleted') throw new RoomFeedError('a deletion', { status: 422, code: 'version_deleted' })
        const element = this.write(id, 'reverted', target.kind, target.data)
        return { element, created: cur.type === 'deleted', seq: this.events.length, key: `k${this.calls.length}` }
      },
      deleteElement: async (_ep, id, ifMatch) => {
        this.calls.push(['delete', id, ifMatch])
        const cur = this.check(id, ifMatch)
        return { element: this.write(id, 'deleted', cur.kind, null) }
      },
      fetchEventPage: async (_ep, { after = '0', types = [] } = {}) => {
        this.calls.push(['events', after])
        if (Number(after) < this.oldestEvent - 1) {
          throw new RoomFeedError('trimmed', { status: 410, code: 'history_trimmed', details: { code: 'history_trimmed', oldest: String(this.oldestEvent) } })
        }
        const read = this.events.filter((e) => Number(e.id) > Number(after)).slice(0, this.pageSize)
        const next = read.length ? read[read.length - 1].id : String(after)
        return { events: read.filter((e) => !types.length || types.includes(e.type)), next, head: String(this.events.length) }
      },
      fetchSnapshotAt: async (_ep, at) => {
        if (at < this.oldestAt) {
          throw new RoomFeedError('trimmed', { status: 410, code: 'history_trimmed', details: { code: 'history_trimmed', oldest: String(this.oldestAt) } })
        }
        const elements = []
        for (const [id, list] of this.versions) {
          const v = [...list].reverse().find((x) => Number(x.seq) <= at)
          if (v && v.type !== 'deleted') elements.push({ id, kind: v.kind, version: v.version, data: v.data })
        }
        return { cursor: String(at), elements }
      },
    }
  }
}

class FakeOutbox extends Emitter {
  constructor() {
    super()
    this.tab = 'tabA'
    this.waiting = []
  }

  pending() {
    return this.waiting
  }

  /** An acknowledged write: mine (this tab's entry) unless tab says otherwise. */
  ack(room, op, element, { tab = 'tabA', deleted = op === 'delete' } = {}) {
    this._emit('ack', { room, entry: { key: `key-${element.version}`, order: `t.${tab}.1`, op, id: element.id }, element, deleted })
  }
}

let server, outbox, room, store

/** A write of this page: on the server, then the outbox's ack. */
function myWrite(id, op, kind, data) {
  const el = server.write(id, op === 'delete' ? 'deleted' : op === 'create' ? 'created' : 'updated', kind, op === 'delete' ? null : data)
  syncRoom()
  outbox.ack('w1', op, el)
  return el
}

function syncRoom() {
  room.elements = Object.fromEntries([...server.versions].filter(([, l]) => l[l.length - 1].type !== 'deleted').map(([i, l]) => [i, { id: i, ...l[l.length - 1] }]))
  room.cursor = String(server.events.length)
}

beforeEach(() => {
  setActivePinia(createPinia())
  server = new FakeHistoryServer()
  outbox = new FakeOutbox()
  room = reactive({ elements: {}, cursor: '0', endpoint: () => ({}) })
  store = useHistoryStore('w1', { room, outbox, api: server.api })
})

describe('undo', () => {
  it('reverts this page\'s own changes step by step, with If-Match of what it last produced', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' }) // someone else: v1
    myWrite('c1', 'patch', 'character', { name: 'Aria B' }) // v2
    outbox.ack('w1', 'patch', server.write('c1', 'updated', 'character', { name: 'Other tab' }), { tab: 'tabB' }) // v3: not ours
    myWrite('c1', 'patch', 'character', { name: 'Aria C' }) // v4
    outbox.ack('w2', 'patch', { id: 'x', kind: 'k', version: 9 }) // another room
    expect(store.undoStack.map((c) => c.version)).toEqual([2, 4])

    expect(await store.undo()).toBe(true)
    expect(server.current('c1').data).toEqual({ name: 'Other tab' })
    expect(server.calls.at(-1)).toEqual(['revert', 'c1', 3, 4])
    expect(store.message).toMatch(/Undone: your change of "Aria C"/)

    expect(await store.undo()).toBe(true)
    // Before v2: If-Match is the version the first undo produced (v5), not v2.
    expect(server.calls.at(-1)).toEqual(['revert', 'c1', 1, 5])
    expect(server.current('c1').data).toEqual({ name: 'Aria' })
    expect(store.undoStack).toEqual([])
    expect(store.canUndo).toBe(false)
    expect(await store.undo()).toBe(false)
  })

  it('does not overwrite someone else\'s later change: says so and drops that element\'s changes', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    server.write('p1', 'created', 'place', { name: 'Harbor' })
    myWrite('p1', 'patch', 'place', { name: 'Harbor B' })
    myWrite('c1', 'patch', 'character', { name: 'Aria B' })
    myWrite('c1', 'patch', 'character', { name: 'Aria C' })
    server.write('c1', 'updated', 'character', { name: 'Theirs' })
    expect(await store.undo()).toBe(false)
    expect(store.message).toMatch(/someone changed this element in the meantime/)
    expect(server.current('c1').data).toEqual({ name: 'Theirs' })
    expect(store.undoStack.map((c) => c.id)).toEqual(['p1'])
    expect(await store.undo()).toBe(true)
    expect(server.current('p1').data).toEqual({ name: 'Harbor' })
  })

  it('undoes a create, and a re-creation, by a delete with If-Match', async () => {
    myWrite('i1', 'create', 'item', { name: 'Lamp' }) // v1
    expect(await store.undo()).toBe(true)
    expect(server.calls.at(-1)).toEqual(['delete', 'i1', 1])
    expect(server.current('i1').type).toBe('deleted') // v2
    myWrite('i1', 'put', 'item', { name: 'Lamp again' }) // v3 re-creates: before it, a deletion
    expect(await store.undo()).toBe(true)
    expect(server.calls.slice(-2)).toEqual([
      ['revert', 'i1', 2, 3],
      ['delete', 'i1', 3],
    ])
    expect(server.current('i1').type).toBe('deleted')
  })

  it('undoes a delete by bringing the element back', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    myWrite('c1', 'delete', 'character')
    expect(await store.undo()).toBe(true)
    expect(server.current('c1')).toMatchObject({ type: 'reverted', data: { name: 'Aria' } })
  })

  it('waits while this room has changes not yet saved', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    myWrite('c1', 'patch', 'character', { name: 'Aria B' })
    outbox.waiting = [{ id: 'c1' }]
    expect(await store.undo()).toBe(false)
    expect(store.message).toMatch(/not saved yet/)
    expect(server.current('c1').version).toBe(2)
    outbox.waiting = []
    expect(await store.undo()).toBe(true)
  })

  it('pushes restores: they can be undone too', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    server.write('c1', 'updated', 'character', { name: 'Aria B' })
    expect(await store.restore('c1', 1, 2)).toBe(true)
    expect(server.current('c1')).toMatchObject({ version: 3, data: { name: 'Aria' } })
    expect(store.undoStack.map((c) => [c.op, c.version])).toEqual([['revert', 3]])
    expect(await store.undo()).toBe(true)
    expect(server.current('c1')).toMatchObject({ version: 4, data: { name: 'Aria B' } })
  })
})

describe('history panels', () => {
  it('pages the versions newest first, keeping the version below each page to diff against', async () => {
    server.write('c1', 'created', 'character', { hp: 0 })
    for (let i = 1; i < 25; i++) server.write('c1', 'updated', 'character', { hp: i })
    await store.openHistory('c1')
    let p = store.panels.c1
    expect(p.versions.map((v) => v.version)).toEqual([25, 24, 23, 22, 21, 20, 19, 18, 17, 16])
    expect(p.base.version).toBe(15)
    expect(p.more).toBe(true)
    await store.older('c1')
    await store.older('c1')
    p = store.panels.c1
    expect(p.versions.map((v) => v.version)).toEqual(Array.from({ length: 25 }, (_, i) => 25 - i))
    expect(p.more).toBe(false)
    expect(p.base).toBe(null)
    await store.older('c1') // nothing more: no call
    expect(server.calls.filter((c) => c[0] === 'history')).toHaveLength(3)
  })

  it('a stale restore is said in the panel, which reloads; nothing is written', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    server.write('c1', 'updated', 'character', { name: 'Aria B' })
    await store.openHistory('c1')
    server.write('c1', 'updated', 'character', { name: 'Theirs' })
    expect(await store.restore('c1', 1, 2)).toBe(false)
    expect(store.panels.c1.note).toMatch(/someone changed this element/)
    expect(store.panels.c1.versions[0].version).toBe(3)
    expect(server.current('c1').data).toEqual({ name: 'Theirs' })
    expect(store.undoStack).toEqual([])
  })
})

describe('deleted elements', () => {
  it('lists the elements deleted in the events (across pages), not those re-created or present, newest first, named', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    server.write('p1', 'created', 'place', { name: 'Harbor' })
    server.write('i1', 'created', 'item', { name: 'Lamp' })
    server.write('c1', 'updated', 'character', { name: 'Aria B' })
    server.write('c1', 'deleted', 'character', null)
    server.write('i1', 'deleted', 'item', null)
    server.write('i1', 'created', 'item', { name: 'Lamp 2' }) // re-created
    server.write('p1', 'deleted', 'place', null)
    syncRoom()
    await store.loadDeleted()
    expect(store.deleted.map((d) => [d.id, d.name, d.seq])).toEqual([
      ['p1', 'Harbor', '8'],
      ['c1', 'Aria B', '5'],
    ])
    expect(server.calls.filter((c) => c[0] === 'events').map((c) => c[1])).toEqual(['0', '3', '6'])

    // Later deletes: the scan goes on from where it stopped.
    server.write('i1', 'deleted', 'item', null)
    syncRoom()
    await store.loadDeleted()
    expect(store.deleted.map((d) => d.id)).toEqual(['i1', 'p1', 'c1'])
    expect(server.calls.filter((c) => c[0] === 'events').map((c) => c[1]).slice(3)).toEqual(['8'])

    // Bring back: a revert to the last version before the delete, with If-Match of the deletion.
    expect(await store.bringBack('c1')).toBe(true)
    expect(server.calls.at(-1)).toEqual(['revert', 'c1', 2, 3])
    expect(server.current('c1')).toMatchObject({ type: 'reverted', data: { name: 'Aria B' } })
    syncRoom()
    expect(store.deleted.map((d) => d.id)).toEqual(['i1', 'p1'])
    expect(store.undoStack.map((c) => c.id)).toEqual(['c1'])
    // Someone brought p1 back first: said in words.
    await server.api.revertElement({}, 'p1', 1, { ifMatch: 2 })
    expect(await store.bringBack('p1')).toBe(false)
    expect(store.message).toMatch(/no longer deleted/)
  })

  it('starts at the oldest event kept when the older ones are trimmed, and says so', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    server.write('c1', 'deleted', 'character', null)
    server.write('p1', 'created', 'place', { name: 'Harbor' })
    server.write('p1', 'deleted', 'place', null)
    server.oldestEvent = 3
    await store.loadDeleted()
    expect(store.deletedPartial).toBe(true)
    expect(store.deleted.map((d) => d.id)).toEqual(['p1'])
    expect(server.calls.filter((c) => c[0] === 'events').map((c) => c[1])).toEqual(['0', '2'])
  })
})

describe('time travel', () => {
  it('shows the room as of a seq, says a trimmed seq with the oldest one, and goes back to live', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    server.write('c1', 'updated', 'character', { name: 'Aria B' })
    syncRoom()
    expect(store.head).toBe(2)
    await store.showAt(1)
    expect(store.at).toMatchObject({ seq: 1, loading: false, error: '' })
    expect(store.at.elements.map((e) => e.data.name)).toEqual(['Aria'])
    await store.showAt(0)
    expect(store.at.elements).toEqual([])
    server.oldestAt = 1
    await store.showAt(0)
    expect(store.at.error).toMatch(/oldest moment that can be shown is seq 1/)
    expect(store.at.oldest).toBe(1)
    store.backToLive()
    expect(store.at).toBe(null)
  })

  it('ignores an answer that arrives after a newer pick or after going back to live', async () => {
    server.write('c1', 'created', 'character', { name: 'Aria' })
    const api = server.api
    const slow = api.fetchSnapshotAt
    let release
    api.fetchSnapshotAt = async (ep, at) => {
      if (at === 0) await new Promise((r) => (release = r))
      return slow(ep, at)
    }
    setActivePinia(createPinia())
    const s = useHistoryStore('w1', { room, outbox, api })
    const first = s.showAt(0)
    await s.showAt(1)
    release()
    await first
    expect(s.at.seq).toBe(1)
    expect(s.at.elements).toHaveLength(1)
    const again = s.showAt(0)
    s.backToLive()
    release()
    await again
    expect(s.at).toBe(null)
  })
})

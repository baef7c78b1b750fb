import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { watch } from 'vue'
import { useRoomStore, newElementId } from './room.js'
import { FakeEventSource, FakeServer, flush } from '../test/fakes.js'

let server

async function liveStore() {
  const store = useRoomStore('w1', {
    baseUrl: '',
    EventSource: FakeEventSource,
    fetch: server.fetch,
    window: null,
    isOnline: () => true,
    backoff: { min: 100, max: 1000 },
  })
  await store.start()
  await flush()
  FakeEventSource.last.open()
  return store
}

/** Deliver the server's events after the stream's cursor (as the real feed would). */
function deliver(from = 0) {
  for (const ev of server.events.slice(from)) FakeEventSource.last.emit(ev.type, ev)
}

function deferred() {
  let resolve
  const promise = new Promise((r) => (resolve = r))
  return { promise, resolve }
}

beforeEach(() => {
  setActivePinia(createPinia())
  FakeEventSource.reset()
  server = new FakeServer('w1')
  server.upsert('c1', 'character', { name: 'Aria', description: 'scout' })
  server.upsert('p1', 'place', { name: 'Harbor' })
  server.upsert('i1', 'item', { name: 'Lamp' })
})

afterEach(() => {
  vi.useRealTimers()
})

describe('room store', () => {
  it('loads the snapshot, groups by kind and tracks cursor and status', async () => {
    const store = await liveStore()
    expect(store.status).toBe('live')
    expect(store.cursor).toBe('3')
    expect(store.loaded).toBe(true)
    expect(store.count).toBe(3)
    expect(store.byKind.map((g) => g.kind)).toEqual(['character', 'place', 'item'])
    server.upsert('z1', 'zone', { name: 'North' })
    server.upsert('c0', 'character', { name: 'Bo' })
    deliver(3)
    expect(store.cursor).toBe('5')
    expect(store.byKind.map((g) => g.kind)).toEqual(['character', 'place', 'item', 'zone'])
    expect(store.byKind[0].elements.map((e) => e.id)).toEqual(['c0', 'c1'])
  })

  it('the same store is returned for the same room, another for another room', async () => {
    const a = useRoomStore('w1', { EventSource: FakeEventSource, fetch: server.fetch, window: null })
    expect(useRoomStore('w1')).toBe(a)
    expect(useRoomStore('w2', { EventSource: FakeEventSource, fetch: server.fetch, window: null })).not.toBe(a)
  })

  it('create is optimistic, then confirmed by the server; its own event is not applied twice', async () => {
    const store = await liveStore()
    const gate = deferred()
    server.hold = gate.promise
    const p = store.create('item', { name: 'Rope' }, { id: 'rope' })
    expect(store.elements.rope).toMatchObject({ kind: 'item', version: 0, data: { name: 'Rope' } })
    expect(store.pending.rope).toBe(1)
    gate.resolve()
    const el = await p
    expect(el).toMatchObject({ id: 'rope', version: 1 })
    expect(store.elements.rope.version).toBe(1)
    expect(store.pending.rope).toBeUndefined()

    let updates = 0
    watch(() => store.elements.rope, () => updates++, { flush: 'sync' })
    deliver(3) // the feed echoes our create (same op id)
    expect(updates).toBe(0)
    expect(store.cursor).toBe('4')
    expect(store.elements.rope.version).toBe(1)
    expect(store.error).toBe('')
  })

  it('own event arriving before the write answer: applied once, overlay dropped on answer', async () => {
    const store = await liveStore()
    const gate = deferred()
    server.hold = gate.promise
    const p = store.rename('c1', 'Bea')
    expect(store.elements.c1.data.name).toBe('Bea')
    gate.resolve()
    // The event goes out before we read the answer.
    await new Promise((r) => setImmediate(r))
    deliver(3)
    expect(store.elements.c1).toMatchObject({ version: 2, data: { name: 'Bea', description: 'scout' } })
    await p
    expect(store.elements.c1).toMatchObject({ version: 2, data: { name: 'Bea' } })
    expect(store.pending.c1).toBeUndefined()
    expect(Object.keys(store.elements)).toHaveLength(3)
  })

  it('rolls back an edit refused with 412 and says why', async () => {
    const store = await liveStore()
    const base = store.elements.c1.version
    // Someone else renames c1 and it reaches us before our write.
    server.upsert('c1', 'character', { name: 'Theirs', description: 'scout' })
    deliver(3)
    expect(store.elements.c1.data.name).toBe('Theirs')
    const gate = deferred()
    server.hold = gate.promise
    const p = store.edit('c1', { name: 'Mine' }, { baseVersion: base })
    expect(store.elements.c1.data.name).toBe('Mine') // optimistic
    gate.resolve()
    expect(await p).toBeNull()
    expect(store.elements.c1).toMatchObject({ version: 2, data: { name: 'Theirs' } })
    expect(store.errorCode).toBe('version_mismatch')
    expect(store.error).toMatch(/changed by someone else/)
    expect(store.pending.c1).toBeUndefined()
    store.clearError()
    expect(store.error).toBe('')
  })

  it('rolls back when the conflicting change arrives only after the failed write', async () => {
    const store = await liveStore()
    server.upsert('c1', 'character', { name: 'Theirs' }) // not delivered yet
    const r = await store.edit('c1', { name: 'Mine' }) // based on v1 (shown), server has v2
    expect(r).toBeNull()
    expect(store.elements.c1.data.name).toBe('Aria') // rolled back to what we know
    deliver(3)
    expect(store.elements.c1.data.name).toBe('Theirs')
    expect(store.error).toMatch(/changed by someone else/)
  })

  it('rolls back create, edit and delete on network failure', async () => {
    const store = await liveStore()
    server.down = true
    expect(await store.create('item', { name: 'Ghost' }, { id: 'g1' })).toBeNull()
    expect(store.elements.g1).toBeUndefined()
    expect(await store.rename('c1', 'Nope')).toBeNull()
    expect(store.elements.c1.data.name).toBe('Aria')
    expect(await store.remove('p1')).toBe(false)
    expect(store.elements.p1).toMatchObject({ data: { name: 'Harbor' } })
    expect(store.errorCode).toBe('network_error')
    expect(store.error).toMatch(/Network problem/)
    expect(Object.keys(store.pending)).toHaveLength(0)
  })

  it('delete is optimistic and stays deleted when the feed echoes it', async () => {
    const store = await liveStore()
    const gate = deferred()
    server.hold = gate.promise
    const p = store.remove('i1')
    expect(store.elements.i1).toBeUndefined()
    gate.resolve()
    expect(await p).toBe(true)
    deliver(3)
    expect(store.elements.i1).toBeUndefined()
    expect(store.byKind.map((g) => g.kind)).toEqual(['character', 'place'])
  })

  it('a delete refused with 404 rolls back (element already gone for everyone is then removed by the feed)', async () => {
    const store = await liveStore()
    server.remove('i1') // someone else deleted it, event not delivered yet
    expect(await store.remove('i1')).toBe(false)
    expect(store.elements.i1).toBeDefined()
    expect(store.error).toMatch(/no longer exists/)
    deliver(3)
    expect(store.elements.i1).toBeUndefined()
  })

  it('successive edits of one element from one window do not conflict with each other', async () => {
    const store = await liveStore()
    const base = store.elements.c1.version
    const a = store.edit('c1', { name: 'One' }, { baseVersion: base })
    const b = store.edit('c1', { description: 'two' }, { baseVersion: base })
    expect(store.elements.c1.data).toEqual({ name: 'One', description: 'two' })
    expect(await a).toMatchObject({ version: 2 })
    expect(await b).toMatchObject({ version: 3, data: { name: 'One', description: 'two' } })
    expect(store.error).toBe('')
  })

  it('a pending edit survives a remote change of another element and a snapshot reload', async () => {
    const store = await liveStore()
    const gate = deferred()
    server.hold = gate.promise
    const p = store.rename('c1', 'Mine')
    server.upsert('p1', 'place', { name: 'Docks' })
    deliver(3)
    FakeEventSource.last.emit('reset', { cursor: '4', reason: 'history_trimmed' }, '')
    await flush()
    expect(store.elements.p1.data.name).toBe('Docks')
    expect(store.elements.c1.data.name).toBe('Mine')
    gate.resolve()
    await p
    expect(store.elements.c1).toMatchObject({ version: 2, data: { name: 'Mine' } })
  })

  it('stop() ends the feed', async () => {
    const store = await liveStore()
    const es = FakeEventSource.last
    store.stop()
    expect(es.closed).toBe(true)
    expect(store.status).toBe('offline')
  })

  it('makes valid, creation-ordered element ids', () => {
    const a = newElementId('character')
    expect(a).toMatch(/^character-[0-9a-z]{13}$/)
    expect(newElementId('My Kind!')).toMatch(/^MyKind-/)
  })
})

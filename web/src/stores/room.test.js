import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { watch } from 'vue'
import { useRoomStore, newElementId, setupRoomStore } from './room.js'
import { acceptRoomStoreHMR, defineRoomStoreFactory } from '@roomfeed/pinia'
import { FakeEventSource, FakeServer, flush } from '../../packages/client/test/fakes.js'

let server
let live = []

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
  live.push(store)
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
  for (const store of live) store.stop()
  live = []
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

  it('the same store is returned for the same room and options, another for other options or another room', async () => {
    const a = useRoomStore('w1', { EventSource: FakeEventSource, fetch: server.fetch, window: null })
    expect(useRoomStore('w1')).toBe(a)
    expect(useRoomStore('w1', { EventSource: FakeEventSource, fetch: server.fetch, window: null })).toBe(a)
    // Options are part of the identity (@roomfeed/pinia): other options, another store, never the first one.
    const b = useRoomStore('w1', { EventSource: FakeEventSource, fetch: server.fetch, window: null, presence: true })
    expect(b).not.toBe(a)
    expect(b.$id).toBe('room/w1?{"presence":true,"window":null}')
    expect(() => useRoomStore('w1')).toThrow(/give the options/) // which one? say it
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

  it('a stale edit of another field is merged by the server without a word', async () => {
    const store = await liveStore()
    server.upsert('c1', 'character', { name: 'Theirs', description: 'scout' }) // v2, not delivered yet
    const el = await store.edit('c1', { description: 'mine' }, { baseVersion: 1 })
    expect(el).toMatchObject({ version: 3, data: { name: 'Theirs', description: 'mine' } })
    expect(server.requests.at(-1).headers.get('If-Match')).toBe('"1"')
    expect(store.elements.c1.data).toEqual({ name: 'Theirs', description: 'mine' })
    expect(store.conflicts).toEqual({})
    expect(store.error).toBe('')
  })

  it('a conflict keeps what the user typed until they choose: keep mine', async () => {
    const store = await liveStore()
    server.upsert('c1', 'character', { name: 'Theirs', description: 'scout' })
    deliver(3)
    expect(await store.edit('c1', { name: 'Mine' }, { baseVersion: 1 })).toBeNull()
    expect(store.elements.c1.data.name).toBe('Theirs') // the card shows theirs...
    const [c] = store.conflicts.c1 // ...and the conflict shows both
    expect(c.conflicts).toEqual([{ path: '/name', base: 'Aria', theirs: 'Theirs', mine: 'Mine' }])
    expect(store.outboxState).toMatchObject({ pending: 0, conflicts: 1 })
    expect(store.error).toBe('')
    await store.keepMine(c.key)
    await vi.waitFor(() => expect(server.elements.get('c1').data.name).toBe('Mine'))
    await vi.waitFor(() => expect(store.elements.c1).toMatchObject({ version: 3, data: { name: 'Mine' } }))
    expect(store.conflicts).toEqual({})
  })

  it('a conflict resolved with take theirs sends nothing for that field and forgets the draft', async () => {
    const store = await liveStore()
    server.upsert('c1', 'character', { name: 'Theirs', description: 'scout' })
    deliver(3)
    await store.edit('c1', { name: 'Mine' }, { baseVersion: 1 })
    const [c] = store.conflicts.c1
    const before = server.requests.length
    await store.takeTheirs(c.key)
    await flush()
    expect(server.requests.length).toBe(before)
    expect(store.conflicts).toEqual({})
    expect(store.elements.c1.data.name).toBe('Theirs')
  })

  it('network failures keep the edits (shown as not yet saved) and send them once the server answers', async () => {
    const store = await liveStore()
    server.down = true
    const created = store.create('item', { name: 'Ghost' }, { id: 'g1' })
    const renamed = store.rename('c1', 'Still mine')
    const removed = store.remove('p1')
    await vi.waitFor(() => expect(store.blocked).toMatchObject({ kind: 'unavailable', code: 'network_error' }))
    expect(store.elements.g1).toMatchObject({ data: { name: 'Ghost' } })
    expect(store.elements.c1.data.name).toBe('Still mine')
    expect(store.elements.p1).toBeUndefined()
    expect(store.pending).toEqual({ g1: 1, c1: 1, p1: 1 })
    expect(store.outboxState.pending).toBe(3)
    expect(store.error).toBe('')
    server.down = false
    expect(await created).toMatchObject({ id: 'g1', version: 1 })
    expect(await renamed).toMatchObject({ version: 2, data: { name: 'Still mine' } })
    expect(await removed).toBe(true)
    expect(store.pending).toEqual({})
    expect(store.blocked).toBeNull()
    expect([...server.elements.keys()].sort()).toEqual(['c1', 'g1', 'i1'])
  })

  it('503 and 429 are retried; the write lands once', async () => {
    const store = await liveStore()
    server.fail(503, 'database_unavailable')
    server.fail(429, 'rate_limited', { retryAfter: 0 })
    const p = store.rename('c1', 'Patient')
    await vi.waitFor(() => expect(store.blocked).toMatchObject({ status: 503, kind: 'unavailable' }))
    expect(await p).toMatchObject({ version: 2 })
    const patches = server.requests.filter((r) => r.method === 'PATCH')
    expect(patches).toHaveLength(3)
    expect(new Set(patches.map((r) => r.headers.get('Idempotency-Key'))).size).toBe(1)
    expect(server.events.filter((e) => e.type === 'element.updated')).toHaveLength(1)
  })

  it('a write refused for good is dropped and said in words', async () => {
    const store = await liveStore()
    server.fail(403, 'forbidden')
    expect(await store.rename('c1', 'Nope')).toBeNull()
    expect(store.elements.c1.data.name).toBe('Aria')
    expect(store.errorCode).toBe('forbidden')
    expect(store.error).toMatch(/may not change this world/)
    store.clearError()
    expect(store.error).toBe('')
  })

  it('pending edits are laid again over every snapshot and event: a reset loses nothing', async () => {
    const store = await liveStore()
    server.down = true
    store.rename('c1', 'Offline name')
    store.create('item', { name: 'Offline item' }, { id: 'o1' })
    await vi.waitFor(() => expect(store.outboxState.blocked).not.toBeNull())
    server.down = false
    server.hold = new Promise(() => {}) // the writes stay unanswered
    // Someone else's changes, then the history is trimmed: the store reloads.
    server.upsert('c1', 'character', { name: 'Theirs', description: 'changed by them' })
    server.upsert('p1', 'place', { name: 'Docks' })
    deliver(3)
    expect(store.elements.c1.data).toEqual({ name: 'Offline name', description: 'changed by them' })
    FakeEventSource.last.emit('reset', { cursor: '5', reason: 'history_trimmed' }, '')
    await flush()
    expect(store.cursor).toBe('5')
    expect(store.elements.c1.data).toEqual({ name: 'Offline name', description: 'changed by them' })
    expect(store.elements.o1.data).toEqual({ name: 'Offline item' })
    expect(store.elements.p1.data.name).toBe('Docks')
    expect(store.pending).toEqual({ c1: 1, o1: 1 })
  })

  it('says in words why the feed cannot be followed', async () => {
    const store = await liveStore()
    server.feedStatus = 403
    FakeEventSource.last.fail()
    await vi.waitFor(() => expect(store.status).toBe('reconnecting'))
    await new Promise((r) => setTimeout(r, 150))
    FakeEventSource.last.fail()
    await vi.waitFor(() => expect(store.status).toBe('error'))
    expect(store.problem).toMatchObject({ status: 403, kind: 'forbidden', title: expect.stringMatching(/access/) })
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

  it('a delete refused with 404 is dropped and said; the feed then removes the element for everyone', async () => {
    const store = await liveStore()
    server.remove('i1') // someone else deleted it, event not delivered yet
    expect(await store.remove('i1', { baseVersion: null })).toBe(false)
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

  it('writes carry the display name (?client=): the actor the server records in open mode', async () => {
    const store = useRoomStore('w1', { baseUrl: '', EventSource: FakeEventSource, fetch: server.fetch, window: null, isOnline: () => true, client: 'alice' })
    await store.start()
    await flush()
    FakeEventSource.last.open()
    live.push(store)
    await store.rename('c1', 'Aria Vell')
    const patch = server.requests.find((r) => r.method === 'PATCH')
    expect(patch.query.get('client')).toBe('alice')
  })

  it('the feed live again after a node outage sends the waiting writes at once, not at the end of their backoff', async () => {
    const { Outbox, memoryStorage } = await import('@roomfeed/client')
    const outbox = new Outbox({ baseUrl: '', fetch: server.fetch, token: null, storage: memoryStorage(), locks: null, channel: null, window: null, isOnline: () => true, backoff: { min: 60000, max: 60000 } })
    const store = useRoomStore('w1', { baseUrl: '', EventSource: FakeEventSource, fetch: server.fetch, window: null, isOnline: () => true, backoff: { min: 1, max: 5 }, outbox })
    await store.start()
    await flush()
    FakeEventSource.last.open()
    live.push(store)
    server.down = true // the server is killed; the browser stays online
    FakeEventSource.last.fail()
    const saved = store.rename('c1', 'Aria Vell')
    await vi.waitFor(() => expect(store.blocked).toMatchObject({ status: 0 }))
    server.down = false // restarted
    await vi.waitFor(() => expect(FakeEventSource.instances.length).toBeGreaterThan(1))
    FakeEventSource.last.open()
    expect(await saved).toMatchObject({ id: 'c1', data: { name: 'Aria Vell' } }) // a 60 s backoff would time out
    expect(store.pending).toEqual({})
    outbox.stop()
  })

  it('a hot update (acceptRoomStoreHMR) keeps the state and the running feed; $dispose() lets go of the feed', async () => {
    const store = await liveStore()
    const es = FakeEventSource.last
    const hot = { data: {}, invalidate: vi.fn() }
    const next = defineRoomStoreFactory('room', setupRoomStore, { hold: false }) // the module evaluated again
    acceptRoomStoreHMR(useRoomStore, hot)({ useRoomStore: next })
    expect(hot.invalidate).not.toHaveBeenCalled()
    expect(FakeEventSource.instances).toHaveLength(1) // the feed went on
    expect(store.count).toBe(3)
    server.upsert('c1', 'character', { name: 'Aria II' })
    deliver(3)
    expect(store.elements.c1.data.name).toBe('Aria II') // the new setup's listeners
    expect(store.cursor).toBe('4')
    live = []
    store.stop()
    store.$dispose()
    expect(es.closed).toBe(true)
    expect(useRoomStore('w1', { EventSource: FakeEventSource, fetch: server.fetch, window: null })).not.toBe(store)
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

describe('room store: live previews', () => {
  it('typing is shared as a draft signal; the other window shows "who is editing" until the commit is saved', async () => {
    const store = await liveStore()
    const es = FakeEventSource.last
    server.onSignal = (sig) => es.emit(sig.type, { ...sig, data: { ...sig.data, tab: 'another-tab' }, person: 'bob' }, '')
    store.typing('c1', 'name', 'Aria V')
    await vi.waitFor(() => expect(store.remoteDrafts).toEqual({ c1: { name: [{ person: 'bob', value: 'Aria V' }] } }))
    const saved = store.rename('c1', 'Aria Vell')
    store.endTyping('c1', 'name', saved)
    expect(store.remoteDrafts.c1).toBeDefined() // the mark stays until the write is saved
    await saved
    await vi.waitFor(() => expect(store.remoteDrafts).toEqual({}))
    expect(server.signals.map((s) => s.data.state)).toEqual(['typing', 'end'])
    expect(server.events.every((e) => e.type.startsWith('element.'))).toBe(true) // drafts never enter the history
  })
})

describe('room store: the copy kept on this device', () => {
  it('before the first snapshot (a page opened offline) shows the saved state with the pending edits over it', async () => {
    const { stateCache } = await import('@roomfeed/client')
    const { memoryStorage } = await import('@roomfeed/client')
    const cache = stateCache()
    await cache.save('w1', { cursor: '3', elements: [...server.elements.values()] })
    const offline = { online: false }
    const { Outbox } = await import('@roomfeed/client')
    const outbox = new Outbox({ baseUrl: '', fetch: server.fetch, token: null, storage: memoryStorage(), locks: null, channel: null, window: null, isOnline: () => offline.online })
    await outbox.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Typed offline' }, base: 1 })
    const store = useRoomStore('w1', { baseUrl: '', EventSource: FakeEventSource, fetch: server.fetch, window: null, isOnline: () => offline.online, outbox, cache })
    await store.start()
    await vi.waitFor(() => expect(store.fromCache).toBe(true))
    expect(store.loaded).toBe(false)
    expect(store.elements.c1.data).toEqual({ name: 'Typed offline', description: 'scout' })
    expect(store.count).toBe(3)
    expect(store.pending).toEqual({ c1: 1 })
    store.stop()
    outbox.stop()
  })

  it('saves the confirmed state after a snapshot and changes', async () => {
    const { stateCache } = await import('@roomfeed/client')
    const cache = stateCache()
    setActivePinia(createPinia())
    const store = useRoomStore('w1', { baseUrl: '', EventSource: FakeEventSource, fetch: server.fetch, window: null, isOnline: () => true, cache })
    await store.start()
    await flush()
    FakeEventSource.last.open()
    live.push(store)
    await vi.waitFor(async () => expect((await cache.load('w1'))?.cursor).toBe('3'))
    expect((await cache.load('w1')).elements.map((e) => e.id).sort()).toEqual(['c1', 'i1', 'p1'])
  })
})

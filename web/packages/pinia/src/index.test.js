// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import { createTestingPinia } from '@pinia/testing'
import { computed, defineComponent, h, nextTick, ref } from 'vue'
import { connect, createOutbox, memoryStorage } from '@roomfeed/client'
import { acceptRoomStoreHMR, defineRoomStore, defineRoomStoreFactory, optionsKey, storeId } from './index.js'
import { FakeEventSource, FakeServer, multiFetch } from '../../client/test/fakes.js'

let rf, servers, pinia

beforeEach(() => {
  FakeEventSource.reset()
  servers = { w1: new FakeServer('w1'), w2: new FakeServer('w2') }
  servers.w1.upsert('c1', 'character', { name: 'Aria' })
  rf = connect({ baseUrl: '', EventSource: FakeEventSource, fetch: multiFetch(servers), window: null, debounceMs: 0 })
  // @pinia/testing's defaults (every action stubbed): holding a room is not an action.
  pinia = createTestingPinia({ createSpy: vi.fn })
})
afterEach(() => rf.close())

async function until(cond, what) {
  for (let i = 0; i < 300; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A component that uses the store of `room` and shows its element names. */
function user(useRoom, room) {
  return defineComponent({
    setup() {
      const store = useRoom(room)
      return () => h('p', Object.values(store.elements).map((e) => e.data.name).join(','))
    },
  })
}

async function live() {
  await until(() => FakeEventSource.instances.length > 0, 'a stream')
  FakeEventSource.last.open()
}

describe('defineRoomStore', () => {
  it('follows the room while components use it, then stops and disposes the store', async () => {
    const useRoom = defineRoomStore('room', { connection: rf })
    const a = mount(user(useRoom, 'w1'), { global: { plugins: [pinia] } })
    const b = mount(user(useRoom, 'w1'), { global: { plugins: [pinia] } })
    await live()
    await until(() => a.text() === 'Aria', 'the snapshot in the first component')
    expect(b.text()).toBe('Aria')
    expect(pinia._s.has('room/w1')).toBe(true)
    const ev = servers.w1.upsert('c2', 'character', { name: 'Bea' })
    FakeEventSource.last.emit(ev.type, ev, `w1:${ev.id}`)
    await nextTick()
    expect(a.text()).toBe('Aria,Bea')
    expect(rf.hub.rooms).toEqual(['w1'])

    a.unmount()
    expect(pinia._s.has('room/w1')).toBe(true) // b still uses it
    b.unmount()
    expect(pinia._s.has('room/w1')).toBe(false)
    expect(pinia.state.value['room/w1']).toBeUndefined()
    expect(rf.hub.rooms).toEqual([])
  })

  it('options are part of the identity: other options, another store; the same options, the same store', async () => {
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null })
    const plain = defineRoomStore('room', { connection: rf })
    const again = defineRoomStore('room', { connection: rf })
    const withOutbox = defineRoomStore('room', { connection: rf, outbox })
    const withSignals = defineRoomStore('room', { connection: rf, signals: ['cursor'] })
    const store = plain('w1', pinia)
    expect(store.$id).toBe('room/w1')
    expect(again('w1', pinia)).toBe(store) // the same options: the same store
    const other = withOutbox('w1', pinia)
    expect(other).not.toBe(store)
    expect(other.$id).toBe('room/w1#2') // other objects (by identity)
    const cursors = withSignals('w1', pinia)
    expect(cursors.$id).toBe('room/w1?{"signals":["cursor"]}') // other data (a stable JSON)
    expect(defineRoomStore('room', { signals: ['cursor'], connection: rf })('w1', pinia)).toBe(cursors)
    // One connection follows the room once: the stores share its feed, which hears every name asked for.
    await live()
    expect(FakeEventSource.instances).toHaveLength(1)
    await until(() => store.loaded && other.loaded && cursors.loaded, 'the snapshot in every store')
    expect(store.client()).toBe(cursors.client())
    expect(FakeEventSource.last.listeners.has('cursor')).toBe(true)
    expect(optionsKey({ b: [1, 'x'], a: 1, c: undefined })).toBe('{"a":1,"b":[1,"x"]}')
    expect(optionsKey({ connection: rf, presence: false })).toBe('{"presence":false} /connection')
    expect(storeId('room', 'w9', { presence: false }, pinia)).toBe('room/w9?{"presence":false}')
    expect(() => defineRoomStore('room', {})).toThrow(TypeError)
    for (const s of [store, store, other, cursors, cursors]) plain.release(s) // store.release() is a stubbed action here
    expect(pinia._s.size).toBe(0)
    expect(rf.hub.rooms).toEqual([]) // the last store let go of the shared feed
    outbox.stop()
  })

  it('works with createTestingPinia() defaults: held by components, released outside one with useRoom.release', async () => {
    const useRoom = defineRoomStore('room', { connection: rf })
    const w = mount(user(useRoom, 'w1'), { global: { plugins: [pinia] } })
    await live()
    await until(() => w.text() === 'Aria', 'the snapshot')
    const store = useRoom('w1') // outside a component: held until released
    expect(store.patch).not.toBe(undefined)
    w.unmount()
    expect(pinia._s.has('room/w1')).toBe(true)
    useRoom.release(store)
    expect(pinia._s.has('room/w1')).toBe(false)
    expect(rf.hub.rooms).toEqual([])
  })

  it('defineRoomStoreFactory: a setup of one\'s own, kept state across hot updates, onHold and onDispose', async () => {
    const started = []
    const stopped = []
    const make = () =>
      defineRoomStoreFactory('counter', (ctx) => {
        ctx.kept.setups = (ctx.kept.setups ?? 0) + 1 // outlives hot updates
        const setups = ctx.kept.setups
        const version = make.version
        ctx.onHold(() => started.push(ctx.id))
        ctx.onDispose(() => stopped.push(ctx.id))
        return { step: ref(ctx.options.step), version: computed(() => version), setups: computed(() => setups) }
      })
    make.version = 1
    const useCounter = make()
    const a = useCounter('w1', { step: 1 })
    expect(a.$id).toBe('counter/w1?{"step":1}')
    expect(useCounter('w1', { step: 1 })).toBe(a)
    expect(useCounter('w1')).toBe(a) // no options: the room's store
    const b = useCounter('w1', { step: 2 })
    expect(b).not.toBe(a)
    expect(() => useCounter('w1')).toThrow(/give the options/)
    expect(started).toEqual(['counter/w1?{"step":1}', 'counter/w1?{"step":2}'])
    expect(a.step).toBe(1)
    make.version = 2
    const hot = { data: {}, invalidate: vi.fn() }
    acceptRoomStoreHMR(useCounter, hot)({ useCounter: make() })
    expect(hot.invalidate).not.toHaveBeenCalled()
    expect(a.version).toBe(2) // the new setup
    expect(a.setups).toBe(2) // with what the first one kept
    expect(a.step).toBe(1) // and the state
    for (let i = 0; i < 3; i++) useCounter.release(a)
    useCounter.release(b)
    expect(stopped).toEqual(['counter/w1?{"step":1}', 'counter/w1?{"step":2}'])
    expect(pinia._s.size).toBe(0)
  })

  it('writes through the outbox with an Idempotency-Key and shows them at once', async () => {
    pinia = createTestingPinia({ stubActions: false, createSpy: vi.fn }) // the writes are actions
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null })
    const useRoom = defineRoomStore('room', { connection: rf, outbox })
    const store = useRoom('w1', pinia)
    await live()
    await until(() => store.loaded, 'the snapshot')
    servers.w1.hold = new Promise((r) => setTimeout(r, 50))
    const done = store.patch('c1', { hp: 9 })
    await until(() => store.pending.c1 === 1, 'the pending write')
    expect(store.elements.c1.data).toEqual({ name: 'Aria', hp: 9 }) // shown before the answer
    expect((await done).outcome).toBe('ack')
    const put = servers.w1.requests.find((r) => r.method === 'PATCH')
    expect(put.headers.get('Idempotency-Key')).toMatch(/.{8,}/)
    expect(store.pending.c1).toBeUndefined()
    expect(store.elements.c1.version).toBe(2)
    store.release()
    outbox.stop()
  })

  it('a hot update keeps the state and the running feed, and the new setup takes over', async () => {
    const useRoom = defineRoomStore('room', { connection: rf })
    const store = useRoom('w1', pinia)
    await live()
    await until(() => store.loaded, 'the snapshot')
    const hot = { data: {}, invalidate: vi.fn() }
    const next = defineRoomStore('room', { connection: rf }) // the module evaluated again
    acceptRoomStoreHMR(useRoom, hot)({ useRoom: next })
    expect(hot.invalidate).not.toHaveBeenCalled()
    expect(FakeEventSource.instances).toHaveLength(1) // the feed went on
    expect(store.elements.c1.data.name).toBe('Aria')
    const ev = servers.w1.upsert('c1', 'character', { name: 'Aria II' })
    FakeEventSource.last.emit(ev.type, ev, `w1:${ev.id}`)
    await nextTick()
    expect(store.elements.c1.data.name).toBe('Aria II')
    useRoom.release(store)
    expect(pinia._s.has('room/w1')).toBe(false)
  })
})

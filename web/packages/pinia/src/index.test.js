// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import { createTestingPinia } from '@pinia/testing'
import { defineComponent, h, nextTick } from 'vue'
import { connect, createOutbox, memoryStorage } from '@roomfeed/client'
import { acceptRoomStoreHMR, defineRoomStore, optionsKey } from './index.js'
import { FakeEventSource, FakeServer, multiFetch } from '../../client/test/fakes.js'

let rf, servers, pinia

beforeEach(() => {
  FakeEventSource.reset()
  servers = { w1: new FakeServer('w1'), w2: new FakeServer('w2') }
  servers.w1.upsert('c1', 'character', { name: 'Aria' })
  rf = connect({ baseUrl: '', EventSource: FakeEventSource, fetch: multiFetch(servers), window: null, debounceMs: 0 })
  pinia = createTestingPinia({ stubActions: false, createSpy: vi.fn })
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

  it('options are part of the identity: another definition of the name with other options throws', () => {
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null })
    const plain = defineRoomStore('room', { connection: rf })
    const again = defineRoomStore('room', { connection: rf })
    const withOutbox = defineRoomStore('room', { connection: rf, outbox })
    const store = plain('w1', pinia)
    expect(again('w1', pinia)).toBe(store) // the same options: the same store
    expect(() => withOutbox('w1', pinia)).toThrow(/already exists with other options/)
    const other = defineRoomStore('room-outbox', { connection: rf, outbox })('w2', pinia)
    expect(other.$id).toBe('room-outbox/w2')
    other.release()
    expect(optionsKey({ a: 1, b: [1, 'x'], c: undefined })).toBe('a=1&b=[1,"x"]')
    expect(() => defineRoomStore('room', {})).toThrow(TypeError)
    store.release()
    again('w1', pinia).release()
  })

  it('writes through the outbox with an Idempotency-Key and shows them at once', async () => {
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
    store.release()
    expect(pinia._s.has('room/w1')).toBe(false)
  })
})

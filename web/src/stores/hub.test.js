// Room stores on the page's one FeedHub (moved here from the client
// package's feedhub tests: the stores are the editor's).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { FeedHub } from '@roomfeed/client'
import { useRoomStore } from './room.js'
import { FakeEventSource, FakeServer, flush, multiFetch, openLive, params, send } from '../../packages/client/test/fakes.js'

class FakeWindow extends EventTarget {}

let servers, hub, win, net

function setup({ rooms = ['a', 'b', 'c'], client = 'alice' } = {}) {
  servers = {}
  for (const r of rooms) servers[r] = new FakeServer(r)
  servers.a?.upsert('a1', 'character', { name: 'Aria' })
  servers.a?.upsert('a2', 'place', { name: 'Harbor' })
  servers.b?.upsert('b1', 'item', { name: 'Lamp' })
  win = new FakeWindow()
  net = { online: true }
  hub = new FeedHub({
    baseUrl: '',
    EventSource: FakeEventSource,
    fetch: multiFetch(servers),
    backoff: { min: 100, max: 1000 },
    window: win,
    isOnline: () => net.online,
    random: () => 1,
    client,
    debounceMs: 10,
  })
  return hub
}

async function settle(ms = 10) {
  await vi.advanceTimersByTimeAsync(ms)
  await flush()
}




beforeEach(() => {
  FakeEventSource.reset()
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
})

afterEach(() => {
  hub?.stop()
  vi.useRealTimers()
})

describe('room stores on a FeedHub', () => {
  it('room stores on one hub share one EventSource; writes go to their own room', async () => {
    setActivePinia(createPinia())
    setup()
    const a = useRoomStore('a', { hub })
    const b = useRoomStore('b', { hub })
    a.start()
    b.start()
    b.start() // a second user of b (the sidebar)
    await settle()
    const es = await openLive()
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(a.count).toBe(2)
    expect(b.status).toBe('live')
    const el = await b.create('item', { name: 'Kite' })
    expect(el.id).toMatch(/^item-/)
    expect(servers.b.elements.has(el.id)).toBe(true)
    send(es, servers.b.events.at(-1)) // the echo of our own write: applied once
    expect(b.count).toBe(2)
    expect(b.cursor).toBe('2')
    b.stop()
    await settle()
    expect(FakeEventSource.instances).toHaveLength(1) // still followed once
    b.stop()
    await settle()
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(params(FakeEventSource.last).getAll('room')).toEqual(['a'])
  })
})

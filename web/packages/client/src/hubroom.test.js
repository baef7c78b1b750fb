import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { HubRoom } from './hubroom.js'
import { FeedHub } from './feedhub.js'
import { RoomCore } from './roomcore.js'
import { RoomFeed } from './roomfeed.js'
import { FakeEventSource, FakeServer, flush } from '../test/fakes.js'

/** Just what a HubRoom asks of its hub: the shared status, attach and detach. */
class StubHub {
  constructor() {
    this.status = 'offline'
    this.attached = []
    this.detached = []
  }

  attach(room) {
    this.attached.push(room)
  }

  detach(room) {
    this.detached.push(room)
  }
}

let server, hub, room, errors

function setup() {
  server = new FakeServer('w1')
  server.upsert('c1', 'character', { name: 'Aria' })
  server.upsert('p1', 'place', { name: 'Harbor' })
  hub = new StubHub()
  room = new HubRoom({ room: 'w1', baseUrl: '', fetch: server.fetch, token: null, hub })
  errors = []
  room.on('error', (e) => errors.push(e))
}

function names() {
  return Object.fromEntries([...room.elements.values()].map((e) => [e.id, e.data.name]))
}

beforeEach(() => {
  FakeEventSource.reset()
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
})

afterEach(() => {
  vi.useRealTimers()
})

describe('HubRoom, driven by its hub', () => {
  it('start() attaches to the hub and opens nothing itself; stop() detaches once', async () => {
    setup()
    await room.start()
    expect(hub.attached).toEqual([room])
    expect(FakeEventSource.instances).toHaveLength(0)
    expect(server.requests).toHaveLength(0) // the hub loads the snapshot once its stream is open
    room.stop()
    room.stop()
    expect(hub.detached).toEqual([room])
    expect(room.status).toBe('offline')
  })

  it('follows the hub\'s status, but is live only once its snapshot is loaded', async () => {
    setup()
    const statuses = []
    room.on('status', (s) => statuses.push(s))
    room.start()
    hub.status = 'live'
    room._refreshStatus()
    expect(room.status).toBe('connecting')
    await room._load()
    expect(room.status).toBe('live')
    hub.status = 'reconnecting'
    room._refreshStatus()
    room._invalidate() // e.g. a reset: not exact until the next snapshot
    hub.status = 'live'
    room._refreshStatus()
    expect(room.status).toBe('reconnecting')
    expect(statuses).toEqual(['connecting', 'live', 'reconnecting'])
  })

  it('buffers its events while loading, then applies those above the snapshot; every seq jump is accepted', async () => {
    setup()
    room.start()
    const early = server.upsert('x0', 'item', { name: 'Before the stream' })
    room._receive(early) // 'new': not on the stream yet, the snapshot will hold it
    expect(room._buffer).toHaveLength(0)
    let release
    const gate = new Promise((r) => (release = r))
    const fetch = room._fetch
    room._fetch = async (url, init) => {
      const res = await fetch(url, init)
      await gate
      return res
    }
    const loading = room._load() // the snapshot is read now, at cursor 3
    await flush()
    expect(room._state).toBe('loading')
    const e4 = server.upsert('c1', 'character', { name: 'Aria II' })
    server.record('chat', undefined) // seq 5, under a name nobody listens to
    const e6 = server.upsert('i1', 'item', { name: 'Lamp' })
    room._receive(early) // already in the snapshot
    room._receive(e4)
    room._receive(e6)
    expect(room.elements.size).toBe(0)
    release()
    await loading
    expect(room._state).toBe('ready')
    expect(room.applied).toBe(6)
    expect(names()).toEqual({ c1: 'Aria II', p1: 'Harbor', x0: 'Before the stream', i1: 'Lamp' })
    expect(errors).toEqual([])
  })

  it('a load overtaken by _invalidate() changes nothing', async () => {
    setup()
    room.start()
    await room._load()
    const snapshots = []
    room.on('snapshot', (s) => snapshots.push(s))
    const load = room._load() // ready: nothing to do
    room._invalidate()
    const again = room._load()
    room._invalidate() // a reset while this load is in flight
    await Promise.all([load, again])
    expect(snapshots).toHaveLength(0)
    expect(room._state).toBe('new')
    expect(room.applied).toBe(2)
  })
})

describe('one type per mode', () => {
  it('hub.createFeed() makes a HubRoom; RoomFeed and HubRoom are both RoomCores with one public API', () => {
    const hub = new FeedHub({ baseUrl: '', EventSource: FakeEventSource, fetch: () => {}, window: null })
    const shared = hub.createFeed('a')
    const alone = new RoomFeed({ room: 'a', EventSource: FakeEventSource, fetch: () => {}, window: null })
    expect(shared).toBeInstanceOf(HubRoom)
    expect(shared).toBeInstanceOf(RoomCore)
    expect(shared).not.toBeInstanceOf(RoomFeed)
    expect(alone).toBeInstanceOf(RoomCore)
    expect(alone).not.toBeInstanceOf(HubRoom)
    for (const feed of [shared, alone]) {
      for (const m of ['start', 'stop', 'on', 'put', 'patch', 'delete', 'create', 'message']) {
        expect(typeof feed[m]).toBe('function')
      }
      expect(feed).toMatchObject({ room: 'a', status: 'offline', applied: null, cursor: '' })
      expect(feed.elements).toBeInstanceOf(Map)
      expect(feed.people).toBeInstanceOf(Set)
    }
  })

  it('a HubRoom keeps presence by default; a RoomFeed only with a client name or presence: true', () => {
    const hub = new FeedHub({ baseUrl: '', EventSource: FakeEventSource, fetch: () => {}, window: null })
    expect(hub.createFeed('a')._presenceOn).toBe(true)
    expect(hub.createFeed('a', { presence: false })._presenceOn).toBe(false)
    const feed = (opts) => new RoomFeed({ room: 'a', EventSource: FakeEventSource, fetch: () => {}, window: null, ...opts })
    expect(feed()._presenceOn).toBe(false)
    expect(feed({ client: 'alice' })._presenceOn).toBe(true)
    expect(feed({ presence: true })._presenceOn).toBe(true)
  })
})

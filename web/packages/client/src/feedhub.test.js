import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { FeedHub, formatCompositeCursor, parseCompositeCursor } from './feedhub.js'
import { FakeEventSource, FakeServer, flush, multiFetch, openLive, params, send } from '../test/fakes.js'

class FakeWindow extends EventTarget {}

let servers, hub, win, net, gates

function setup({ rooms = ['a', 'b', 'c'], client = 'alice', token = null } = {}) {
  servers = {}
  for (const r of rooms) servers[r] = new FakeServer(r)
  servers.a?.upsert('a1', 'character', { name: 'Aria' })
  servers.a?.upsert('a2', 'place', { name: 'Harbor' })
  servers.b?.upsert('b1', 'item', { name: 'Lamp' })
  win = new FakeWindow()
  net = { online: true }
  gates = {} // room -> promise: its snapshot answer waits for it (the state is read at once)
  const route = multiFetch(servers)
  const fetch = async (url, init) => {
    const res = await route(url, init)
    const m = new URL(url, 'http://x').pathname.match(/^\/rooms\/([^/]+)\/elements$/)
    if (m && gates[m[1]]) await gates[m[1]]
    return res
  }
  hub = new FeedHub({
    baseUrl: '',
    EventSource: FakeEventSource,
    fetch,
    backoff: { min: 100, max: 1000 },
    window: win,
    isOnline: () => net.online,
    random: () => 1,
    token,
    client,
    debounceMs: 10,
  })
  return hub
}

function follow(...rooms) {
  const feeds = {}
  for (const r of rooms) {
    feeds[r] = hub.createFeed(r)
    feeds[r].start()
  }
  return feeds
}

async function settle(ms = 10) {
  await vi.advanceTimersByTimeAsync(ms)
  await flush()
}




function snapshotGets(room) {
  return servers[room].requests.filter((r) => r.method === 'GET' && r.path.endsWith('/elements')).length
}

function names(feed) {
  return Object.fromEntries([...feed.elements.values()].map((e) => [e.id, e.data.name]))
}

function serverNames(room) {
  return Object.fromEntries([...servers[room].elements.values()].map((e) => [e.id, e.data.name]))
}

beforeEach(() => {
  FakeEventSource.reset()
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
})

afterEach(() => {
  hub?.stop()
  vi.useRealTimers()
})

describe('composite cursor', () => {
  it('formats and parses a:42,b:7', () => {
    expect(formatCompositeCursor([['a', 42], ['b-1.x', 7]])).toBe('a:42,b-1.x:7')
    expect(parseCompositeCursor('a:42,b-1.x:7')).toEqual({ a: 42, 'b-1.x': 7 })
    expect(parseCompositeCursor('a:42-0')).toEqual({ a: 42 })
    expect(parseCompositeCursor('')).toEqual({})
    expect(parseCompositeCursor('a42')).toBeNull()
    expect(parseCompositeCursor('a:x')).toBeNull()
  })
})

describe('FeedHub', () => {
  it('opens one stream for all rooms (debounced), loads each snapshot after the open, builds the composite cursor', async () => {
    setup()
    const feeds = follow('a', 'b', 'c')
    expect(FakeEventSource.instances).toHaveLength(0) // debounced
    await settle()
    expect(FakeEventSource.instances).toHaveLength(1)
    const es = FakeEventSource.last
    expect(es.url.startsWith('/events?')).toBe(true)
    expect(params(es).getAll('room')).toEqual(['a', 'b', 'c'])
    expect(params(es).get('client')).toBe('alice')
    expect(params(es).get('last_event_id')).toBeNull() // nothing exact yet: every room starts live
    expect(feeds.a.status).toBe('connecting')
    expect(snapshotGets('a')).toBe(0)

    await openLive()
    expect(hub.status).toBe('live')
    for (const r of ['a', 'b', 'c']) {
      expect(snapshotGets(r)).toBe(1)
      expect(feeds[r].status).toBe('live')
      expect(names(feeds[r])).toEqual(serverNames(r))
    }
    expect(hub.cursor).toBe('a:2,b:1,c:0')
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('follows ten rooms added one after another on one EventSource', async () => {
    setup({ rooms: Array.from({ length: 10 }, (_, i) => `r${i}`) })
    for (let i = 0; i < 10; i++) {
      follow(`r${i}`)
      await vi.advanceTimersByTimeAsync(2)
    }
    await settle()
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(params(FakeEventSource.last).getAll('room')).toHaveLength(10)
  })

  it('dispatches by room, applies by each room\'s seq, skips duplicates, accepts a jump without reopening', async () => {
    setup()
    const feeds = follow('a', 'b', 'c')
    await settle()
    const es = await openLive()
    const changes = { a: [], b: [], c: [] }
    for (const r of ['a', 'b', 'c']) feeds[r].on('change', ({ id }) => changes[r].push(id))

    const e1 = servers.b.upsert('b2', 'item', { name: 'Rope' })
    const e2 = servers.a.upsert('a1', 'character', { name: 'Aria Vell' })
    const e3 = servers.b.upsert('b1', 'item', { name: 'Brass Lamp' })
    send(es, e1)
    send(es, e2)
    send(es, e1) // duplicate
    send(es, servers.a.events[0]) // old (in the snapshot)
    send(es, e3)
    expect(names(feeds.a)).toEqual(serverNames('a'))
    expect(names(feeds.b)).toEqual(serverNames('b'))
    expect(changes).toEqual({ a: ['a1'], b: ['b2', 'b1'], c: [] })
    expect(hub.cursor).toBe('a:3,b:3,c:0')

    // A custom message under a name nobody listens to went by in c (seq 1):
    // the next change (seq 2) is a jump, accepted at once.
    servers.c.record('chat', undefined)
    const e4 = servers.c.upsert('c1', 'place', { name: 'Quay' })
    send(es, e4)
    expect(names(feeds.c)).toEqual({ c1: 'Quay' })
    expect(feeds.c.applied).toBe(2)
    await settle(5000)
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('buffers a room\'s events while its snapshot loads, then applies those above the snapshot', async () => {
    setup()
    const feeds = follow('a', 'b')
    await settle()
    let release
    gates.a = new Promise((r) => (release = r))
    const es = FakeEventSource.last
    es.open()
    await flush()
    expect(snapshotGets('a')).toBe(1) // read at cursor 2, answer held back
    expect(feeds.a.status).toBe('connecting')
    const e3 = servers.a.upsert('a3', 'item', { name: 'Map' })
    const e4 = servers.a.upsert('a1', 'character', { name: 'Aria II' })
    send(es, servers.a.events[1]) // seq 2: in the snapshot
    send(es, e3)
    send(es, e4)
    expect(feeds.a.elements.size).toBe(0)
    release()
    await flush(10)
    expect(names(feeds.a)).toEqual(serverNames('a'))
    expect(feeds.a.applied).toBe(4)
    expect(feeds.a.status).toBe('live')
    expect(names(feeds.b)).toEqual(serverNames('b'))
  })

  it('a reset of one room reloads only that room', async () => {
    setup()
    const feeds = follow('a', 'b', 'c')
    await settle()
    const es = await openLive()
    // Changes in b's trimmed history that this client never saw:
    servers.b.upsert('b1', 'item', { name: 'Lost Lamp' })
    servers.b.upsert('b9', 'item', { name: 'Unseen' })
    es.emit('reset', { room: 'b', cursor: String(servers.b.seq), reason: 'history_trimmed' }, `a:2,b:${servers.b.seq},c:0`)
    await flush(10)
    expect(snapshotGets('b')).toBe(2)
    expect(snapshotGets('a')).toBe(1)
    expect(snapshotGets('c')).toBe(1)
    expect(names(feeds.b)).toEqual(serverNames('b'))
    expect(feeds.b.cursor).toBe('3')
    expect(feeds.b.status).toBe('live')
    expect(FakeEventSource.instances).toHaveLength(1)
    // and b goes on from there
    const e = servers.b.upsert('b10', 'item', { name: 'After' })
    send(es, e)
    expect(names(feeds.b)).toEqual(serverNames('b'))
  })

  it('reopens after a failure with every room\'s latest cursor, without reloading snapshots', async () => {
    setup()
    const feeds = follow('a', 'b', 'c')
    await settle()
    const es = await openLive()
    send(es, servers.a.upsert('a3', 'item', { name: 'Map' }))
    es.fail()
    expect(hub.status).toBe('reconnecting')
    expect(feeds.a.status).toBe('reconnecting')
    await settle(100)
    expect(FakeEventSource.instances).toHaveLength(2)
    const es2 = FakeEventSource.last
    expect(es.closed).toBe(true)
    expect(params(es2).get('last_event_id')).toBe('a:3,b:1,c:0')
    // Changes made while away arrive as the server's replay from those cursors.
    const missed = [servers.b.upsert('b2', 'item', { name: 'Rope' }), servers.a.upsert('a2', 'place', { name: 'Quay' })]
    es2.open()
    await flush(10)
    for (const ev of missed) send(es2, ev)
    for (const r of ['a', 'b', 'c']) {
      expect(snapshotGets(r)).toBe(1)
      expect(names(feeds[r])).toEqual(serverNames(r))
      expect(feeds[r].status).toBe('live')
    }
  })

  it('a stream refused with 403 puts the hub and every room in "error" with the problem; an open clears it', async () => {
    setup()
    const feeds = follow('a', 'b')
    await settle()
    servers.b.feedStatus = 403
    FakeEventSource.last.fail() // never opened: the hub asks why
    await flush(10)
    expect(hub.status).toBe('error')
    expect(hub.problem).toMatchObject({ status: 403, code: 'forbidden' })
    for (const r of ['a', 'b']) {
      expect(feeds[r].status).toBe('error')
      expect(feeds[r].problem).toMatchObject({ status: 403 })
    }
    servers.b.feedStatus = 200
    await settle(1000)
    await openLive()
    expect(hub.problem).toBeNull()
    expect(feeds.a.status).toBe('live')
    expect(feeds.b.problem).toBeNull()
  })

  it('after four failed opens in a row, every room reloads its snapshot', async () => {
    setup()
    const feeds = follow('a', 'b')
    await settle()
    await openLive()
    for (let i = 0; i < 4; i++) {
      FakeEventSource.last.fail()
      await settle(1000)
    }
    expect(params(FakeEventSource.last).get('last_event_id')).toBe('a:2,b:1')
    FakeEventSource.last.fail()
    await settle(1000)
    const es = FakeEventSource.last
    expect(params(es).get('last_event_id')).toBeNull()
    servers.a.upsert('a9', 'item', { name: 'New' })
    es.open()
    await flush(10)
    expect(snapshotGets('a')).toBe(2)
    expect(names(feeds.a)).toEqual(serverNames('a'))
  })

  it('reopens when the room set changes: a removed room goes, an added room starts live and loads its snapshot', async () => {
    setup({ rooms: ['a', 'b', 'c', 'd'] })
    const feeds = follow('a', 'b', 'c')
    await settle()
    await openLive()
    feeds.c.stop()
    const [d] = Object.values(follow('d'))
    expect(FakeEventSource.instances).toHaveLength(1) // debounced: one reopen for both
    await settle()
    expect(FakeEventSource.instances).toHaveLength(2)
    const es = FakeEventSource.last
    expect(params(es).getAll('room')).toEqual(['a', 'b', 'd'])
    expect(params(es).get('last_event_id')).toBe('a:2,b:1')
    expect(FakeEventSource.instances.filter((e) => !e.closed)).toHaveLength(1)
    expect(feeds.a.status).toBe('live') // exact rooms stay live through the reopen
    servers.d.upsert('d1', 'place', { name: 'Dock' })
    es.open()
    await flush(10)
    expect(names(d)).toEqual({ d1: 'Dock' })
    expect(snapshotGets('a')).toBe(1)

    // Stopping every room closes the stream.
    for (const f of [feeds.a, feeds.b, d]) f.stop()
    await settle()
    expect(es.closed).toBe(true)
    expect(hub.status).toBe('offline')
  })

  it('presence: loaded on open, applied live, never moves a cursor', async () => {
    setup()
    servers.a.people = ['alice', 'bob']
    const feeds = follow('a', 'b')
    const people = []
    feeds.a.on('presence', (list) => people.push(list))
    await settle()
    const es = await openLive()
    expect(people.at(-1)).toEqual(['alice', 'bob'])
    const before = hub.cursor
    es.emit('presence.joined', { room: 'a', person: 'carol', type: 'presence.joined', at: 'now' }, '')
    es.emit('presence.left', { room: 'a', person: 'bob', type: 'presence.left', at: 'now' }, '')
    es.emit('presence.joined', { room: 'b', person: 'dave', type: 'presence.joined', at: 'now' }, '')
    expect([...feeds.a.people].sort()).toEqual(['alice', 'carol'])
    expect([...feeds.b.people]).toEqual(['dave'])
    expect(hub.cursor).toBe(before)
    expect(feeds.a.applied).toBe(2)
    // an event after presence events applies normally (no gap, no skip)
    send(es, servers.a.upsert('a3', 'item', { name: 'Map' }))
    expect(feeds.a.applied).toBe(3)

    // Reopen: presence reloads, and a leave seen while GET /presence is in flight still counts.
    servers.a.people = ['alice', 'carol', 'erin']
    es.fail()
    await settle(100)
    const es2 = FakeEventSource.last
    expect(params(es2).get('last_event_id')).toBe('a:3,b:1')
    es2.open()
    es2.emit('presence.left', { room: 'a', person: 'erin', type: 'presence.left', at: 'now' }, '')
    await flush(10)
    expect(people.at(-1)).toEqual(['alice', 'carol'])
  })

  it('a room stopped and followed again before the stream changes loads on the open stream', async () => {
    setup()
    servers.b.people = ['bob']
    const feeds = follow('a', 'b')
    await settle()
    await openLive()
    feeds.b.stop()
    const b2 = hub.createFeed('b')
    b2.start()
    await settle()
    await flush(10)
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(names(b2)).toEqual(serverNames('b'))
    expect([...b2.people]).toEqual(['bob'])
    expect(b2.status).toBe('live')
  })

  it('a new name reopens the stream under it; a token goes as access_token', async () => {
    setup({ token: 'T0K' })
    follow('a')
    await settle()
    expect(params(FakeEventSource.last).get('access_token')).toBe('T0K')
    await openLive()
    hub.setClient('zoe')
    await settle()
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(params(FakeEventSource.last).get('client')).toBe('zoe')
    expect(params(FakeEventSource.last).get('last_event_id')).toBe('a:2')
  })

  it('auth_expired reopens at once with a fresh token and the same cursors', async () => {
    let fresh = false
    setup({ token: (opts) => ((fresh ||= !!opts?.refresh) ? 'new' : 'old') })
    follow('a', 'b')
    await settle()
    expect(params(FakeEventSource.last).get('access_token')).toBe('old')
    const es = await openLive()
    es.emit('auth_expired', {}, '')
    await flush()
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(params(FakeEventSource.last).get('access_token')).toBe('new')
    expect(params(FakeEventSource.last).get('last_event_id')).toBe('a:2,b:1')
  })

  it('offline closes the stream; online reopens at once from the cursors', async () => {
    setup()
    const feeds = follow('a', 'b')
    await settle()
    const es = await openLive()
    net.online = false
    win.dispatchEvent(new Event('offline'))
    expect(es.closed).toBe(true)
    expect(feeds.a.status).toBe('offline')
    net.online = true
    win.dispatchEvent(new Event('online'))
    await flush()
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(params(FakeEventSource.last).get('last_event_id')).toBe('a:2,b:1')
    expect(feeds.a.status).toBe('reconnecting')
  })
})

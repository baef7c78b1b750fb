import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { RoomFeed, RoomFeedError, diffMergePatch, mergePatch } from './roomfeed.js'
import { FakeEventSource, FakeServer, flush } from '../test/fakes.js'

class FakeWindow extends EventTarget {}

function setup({ online = true, seed = true } = {}) {
  const server = new FakeServer('w1')
  if (seed) {
    server.upsert('c1', 'character', { name: 'Aria' })
    server.upsert('p1', 'place', { name: 'Harbor' })
  }
  const win = new FakeWindow()
  const net = { online }
  const feed = new RoomFeed({
    room: 'w1',
    baseUrl: 'http://rf.test',
    EventSource: FakeEventSource,
    fetch: server.fetch,
    backoff: { min: 100, max: 1000 },
    window: win,
    isOnline: () => net.online,
    random: () => 1, // no jitter: delays are exactly min * 2^n (capped)
  })
  const statuses = []
  feed.on('status', (s) => statuses.push(s))
  return { server, feed, win, net, statuses }
}

async function startLive(ctx) {
  await ctx.feed.start()
  await flush()
  const es = FakeEventSource.last
  es.open()
  return es
}

beforeEach(() => {
  FakeEventSource.reset()
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
})

afterEach(() => {
  vi.useRealTimers()
})

describe('RoomFeed', () => {
  it('loads the snapshot, then opens the stream at its cursor', async () => {
    const ctx = setup()
    const snapshots = []
    ctx.feed.on('snapshot', (s) => snapshots.push(s))
    const es = await startLive(ctx)
    expect(snapshots).toHaveLength(1)
    expect(snapshots[0].cursor).toBe('2')
    expect([...ctx.feed.elements.keys()].sort()).toEqual(['c1', 'p1'])
    expect(es.url).toBe('http://rf.test/rooms/w1/events?last_event_id=2')
    expect(ctx.statuses).toEqual(['connecting', 'live'])
  })

  it('applies each event once: duplicates and old events are skipped', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const changes = []
    ctx.feed.on('change', (c) => changes.push(c))
    const ev3 = ctx.server.upsert('c1', 'character', { name: 'Bob' })
    const ev4 = ctx.server.upsert('i1', 'item', { name: 'Lamp' })
    es.emit(ev3.type, ev3)
    es.emit(ev3.type, ev3) // duplicate
    es.emit(ctx.server.events[0].type, ctx.server.events[0]) // already in the snapshot
    es.emit(ev4.type, ev4)
    es.emit(ev3.type, ev3) // old, out of order
    expect(changes.map((c) => c.seq)).toEqual([3, 4])
    expect(ctx.feed.cursor).toBe('4')
    expect(ctx.feed.elements.get('c1').data.name).toBe('Bob')
    expect(ctx.feed.elements.get('c1').version).toBe(2)
    expect(ctx.feed.elements.get('i1').data.name).toBe('Lamp')
  })

  it('never applies across a gap: reopens from its cursor instead', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const ev3 = ctx.server.upsert('c1', 'character', { name: 'Bob' })
    const ev4 = ctx.server.upsert('c1', 'character', { name: 'Cy' })
    es.emit(ev4.type, ev4) // seq 4 before 3
    expect(ctx.feed.cursor).toBe('2')
    expect(ctx.feed.elements.get('c1').data.name).toBe('Aria')
    expect(es.closed).toBe(true)
    const es2 = FakeEventSource.last
    expect(es2).not.toBe(es)
    expect(es2.lastEventIdParam).toBe('2')
    es2.open()
    es2.emit(ev3.type, ev3)
    es2.emit(ev4.type, ev4)
    expect(ctx.feed.cursor).toBe('4')
    expect(ctx.feed.elements.get('c1').data.name).toBe('Cy')
  })

  it('accepts a gap that the fresh stream repeats (events it cannot hear, e.g. unknown custom names)', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const ev4 = { ...ctx.server.upsert('c1', 'character', { name: 'Bob' }), id: '4' }
    es.emit(ev4.type, ev4, '4')
    const es2 = FakeEventSource.last
    expect(es2).not.toBe(es)
    es2.open()
    es2.emit(ev4.type, ev4, '4')
    expect(ctx.feed.cursor).toBe('4')
    expect(FakeEventSource.instances).toHaveLength(2)
  })

  it('element.deleted removes the element; a later old update does not bring it back', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const upd = ctx.server.upsert('c1', 'character', { name: 'Bob' })
    const del = ctx.server.remove('c1')
    es.emit(upd.type, upd)
    es.emit(del.type, del)
    expect(ctx.feed.elements.has('c1')).toBe(false)
    es.emit(upd.type, upd)
    expect(ctx.feed.elements.has('c1')).toBe(false)
  })

  it('delivers custom messages it listens for and advances the cursor', async () => {
    const ctx = setup()
    ctx.feed._messageNames = ['chat']
    const es = await startLive(ctx)
    const got = []
    ctx.feed.on('message', (m) => got.push(m))
    es.emit('chat', { id: '3', room: 'w1', type: 'chat', data: { text: 'hi' } })
    expect(got).toHaveLength(1)
    expect(got[0].data.text).toBe('hi')
    expect(ctx.feed.cursor).toBe('3')
  })

  it('reset reloads the snapshot and resumes from its cursor', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const snapshots = []
    ctx.feed.on('snapshot', (s) => snapshots.push(s))
    // Meanwhile many changes happened; the server trimmed its history.
    ctx.server.upsert('c1', 'character', { name: 'Zed' })
    ctx.server.remove('p1')
    ctx.server.upsert('i9', 'item', { name: 'Key' })
    es.emit('reset', { cursor: '5', reason: 'history_trimmed' }, '')
    await flush()
    expect(es.closed).toBe(true)
    expect(snapshots).toHaveLength(1)
    expect(snapshots[0].cursor).toBe('5')
    expect(ctx.feed.elements.get('c1').data.name).toBe('Zed')
    expect(ctx.feed.elements.has('p1')).toBe(false)
    expect(ctx.feed.elements.has('i9')).toBe(true)
    const es2 = FakeEventSource.last
    expect(es2).not.toBe(es)
    expect(es2.lastEventIdParam).toBe('5')
  })

  it('reopens after a failure with capped exponential backoff and the latest cursor', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const ev3 = ctx.server.upsert('c1', 'character', { name: 'Bob' })
    es.emit(ev3.type, ev3)
    es.fail(2)
    expect(ctx.feed.status).toBe('reconnecting')
    expect(es.closed).toBe(true)
    const n = FakeEventSource.instances.length
    await vi.advanceTimersByTimeAsync(99)
    expect(FakeEventSource.instances.length).toBe(n)
    await vi.advanceTimersByTimeAsync(1)
    expect(FakeEventSource.instances.length).toBe(n + 1)
    expect(FakeEventSource.last.lastEventIdParam).toBe('3')
    // It keeps failing: 200, 400 ms, ... each attempt with the cursor.
    FakeEventSource.last.fail(0)
    await vi.advanceTimersByTimeAsync(199)
    expect(FakeEventSource.instances.length).toBe(n + 1)
    await vi.advanceTimersByTimeAsync(1)
    expect(FakeEventSource.instances.length).toBe(n + 2)
    FakeEventSource.last.fail(2)
    await vi.advanceTimersByTimeAsync(400)
    expect(FakeEventSource.instances.length).toBe(n + 3)
    expect(FakeEventSource.last.lastEventIdParam).toBe('3')
    FakeEventSource.last.open()
    expect(ctx.feed.status).toBe('live')
    expect(ctx.statuses).toEqual(['connecting', 'live', 'reconnecting', 'live'])
  })

  it('backoff delays are capped and jittered', () => {
    const feed = new RoomFeed({ room: 'w1', EventSource: FakeEventSource, fetch: () => {}, backoff: { min: 100, max: 1000 }, random: () => 0, window: null })
    const delays = Array.from({ length: 8 }, () => feed.nextDelay())
    expect(delays).toEqual([50, 100, 200, 400, 500, 500, 500, 500])
    const feed2 = new RoomFeed({ room: 'w1', EventSource: FakeEventSource, fetch: () => {}, backoff: { min: 100, max: 1000 }, random: () => 1, window: null })
    expect(Array.from({ length: 6 }, () => feed2.nextDelay())).toEqual([100, 200, 400, 800, 1000, 1000])
  })

  it('retries the snapshot while the server is down, then goes live', async () => {
    const ctx = setup()
    ctx.server.down = true
    await ctx.feed.start()
    expect(ctx.feed.status).toBe('connecting')
    expect(FakeEventSource.instances).toHaveLength(0)
    ctx.server.down = false
    await vi.advanceTimersByTimeAsync(100)
    await flush()
    expect(FakeEventSource.instances).toHaveLength(1)
    FakeEventSource.last.open()
    expect(ctx.feed.status).toBe('live')
  })

  it('goes offline with the browser and catches up from its cursor when back online', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    ctx.net.online = false
    ctx.win.dispatchEvent(new Event('offline'))
    expect(ctx.feed.status).toBe('offline')
    expect(es.closed).toBe(true)
    await vi.advanceTimersByTimeAsync(5000)
    expect(FakeEventSource.instances).toHaveLength(1) // no retries while offline
    ctx.net.online = true
    ctx.win.dispatchEvent(new Event('online'))
    await flush()
    expect(ctx.feed.status).toBe('reconnecting')
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(FakeEventSource.last.lastEventIdParam).toBe('2')
    FakeEventSource.last.open()
    expect(ctx.feed.status).toBe('live')
  })

  it('started while the browser is offline: waits for online, then loads and goes live', async () => {
    const ctx = setup({ online: false })
    await ctx.feed.start()
    expect(ctx.feed.status).toBe('offline')
    expect(ctx.server.requests).toHaveLength(0)
    ctx.net.online = true
    ctx.win.dispatchEvent(new Event('online'))
    await flush()
    expect(ctx.feed.status).toBe('connecting')
    FakeEventSource.last.open()
    expect(ctx.feed.status).toBe('live')
    expect(ctx.feed.cursor).toBe('2')
  })

  it('stop() closes the stream, cancels the retry timer and ignores late events', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    es.fail(2)
    ctx.feed.stop()
    expect(ctx.feed.status).toBe('offline')
    await vi.advanceTimersByTimeAsync(60_000)
    expect(FakeEventSource.instances).toHaveLength(1)
    const ev = ctx.server.upsert('c1', 'character', { name: 'Late' })
    es.emit(ev.type, ev)
    expect(ctx.feed.elements.get('c1').data.name).toBe('Aria')
    ctx.win.dispatchEvent(new Event('online'))
    await flush()
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('stop() during the snapshot load opens nothing', async () => {
    const ctx = setup()
    const p = ctx.feed.start()
    ctx.feed.stop()
    await p
    await flush()
    expect(FakeEventSource.instances).toHaveLength(0)
    expect(ctx.feed.status).toBe('offline')
  })

  it('write helpers send Op-ID and If-Match and return element and seq', async () => {
    const ctx = setup()
    await startLive(ctx)
    const res = await ctx.feed.patch('c1', { name: 'Bob', description: 'tall' }, { ifMatch: 1 })
    expect(res.seq).toBe(3)
    expect(res.element).toMatchObject({ id: 'c1', version: 2, data: { name: 'Bob', description: 'tall' } })
    const req = ctx.server.requests.at(-1)
    expect(req.method).toBe('PATCH')
    expect(req.headers.get('Content-Type')).toBe('application/merge-patch+json')
    expect(req.headers.get('If-Match')).toBe('"1"')
    expect(req.headers.get('Op-ID')).toBe(res.opId)
    expect(ctx.feed.elements.get('c1').version).toBe(2)

    const put = await ctx.feed.put('n1', { kind: 'item', data: { name: 'Rope' } }, { ifNoneMatch: true })
    expect(put.status).toBe(201)
    expect(ctx.server.requests.at(-1).headers.get('If-None-Match')).toBe('*')

    const del = await ctx.feed.delete('n1')
    expect(del.seq).toBe(5)
    expect(ctx.feed.elements.has('n1')).toBe(false)
  })

  it('write errors carry status and code', async () => {
    const ctx = setup()
    await startLive(ctx)
    const err = await ctx.feed.patch('c1', { name: 'X' }, { ifMatch: 7 }).catch((e) => e)
    expect(err).toBeInstanceOf(RoomFeedError)
    expect(err.status).toBe(412)
    expect(err.code).toBe('version_mismatch')
    expect(err.isConflict).toBe(true)
    ctx.server.down = true
    const net = await ctx.feed.patch('c1', { name: 'X' }).catch((e) => e)
    expect(net.status).toBe(0)
    expect(net.code).toBe('network_error')
  })

  it('recognises its own write in the feed and does not apply it twice', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const changes = []
    const events = []
    ctx.feed.on('change', (c) => changes.push(c))
    ctx.feed.on('event', (e) => events.push(e))
    const res = await ctx.feed.patch('c1', { name: 'Bob' })
    const ev = ctx.server.events.at(-1)
    expect(ev.op_id).toBe(res.opId)
    es.emit(ev.type, ev)
    expect(events).toHaveLength(1)
    expect(events[0].own).toBe(true)
    expect(changes).toHaveLength(1) // from the write answer only
    expect(changes[0].source).toBe('write')
    expect(ctx.feed.cursor).toBe('3')
  })

  it('a snapshot older than a write answer does not undo that write', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    // The snapshot GET is answered with the state before our write...
    const before = { room: 'w1', cursor: '2', elements: [...ctx.server.elements.values()] }
    await ctx.feed.patch('c1', { name: 'Mine' }) // seq 3
    await ctx.feed.delete('p1') // seq 4
    const realFetch = ctx.feed._fetch
    ctx.feed._fetch = async (url, init) =>
      (init?.method ?? 'GET') === 'GET' ? ctx.server.json(200, before) : realFetch(url, init)
    es.emit('reset', { cursor: '2', reason: 'history_trimmed' }, '')
    await flush()
    expect(ctx.feed.cursor).toBe('2')
    expect(ctx.feed.elements.get('c1').data.name).toBe('Mine')
    expect(ctx.feed.elements.has('p1')).toBe(false)
    // ...and the stream from 2 replays both, applied once each.
    const es2 = FakeEventSource.last
    es2.open()
    for (const ev of ctx.server.events.slice(2)) es2.emit(ev.type, ev)
    expect(ctx.feed.cursor).toBe('4')
    expect(ctx.feed.elements.get('c1')).toMatchObject({ version: 2, data: { name: 'Mine' } })
    expect(ctx.feed.elements.has('p1')).toBe(false)
  })

  it('an older event arriving after a newer write answer does not roll the element back', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    const other = ctx.server.upsert('c1', 'character', { name: 'Other' }) // seq 3, not yet delivered
    await ctx.feed.patch('c1', { name: 'Mine' }) // seq 4, version 3
    es.emit(other.type, other)
    expect(ctx.feed.elements.get('c1').data.name).toBe('Mine')
    es.emit(ctx.server.events[3].type, ctx.server.events[3])
    expect(ctx.feed.elements.get('c1')).toMatchObject({ version: 3, data: { name: 'Mine' } })
  })
})

describe('RoomFeed presence (one room, its own stream)', () => {
  it('sends client=, loads GET /presence on open, applies joined/left without moving the cursor', async () => {
    const server = new FakeServer('w1')
    server.upsert('c1', 'character', { name: 'Aria' })
    server.people = ['alice']
    const feed = new RoomFeed({
      room: 'w1',
      baseUrl: '',
      EventSource: FakeEventSource,
      fetch: server.fetch,
      window: null,
      isOnline: () => true,
      token: null,
      client: 'alice',
    })
    const seen = []
    feed.on('presence', (list) => seen.push(list))
    await feed.start()
    await flush()
    const es = FakeEventSource.last
    expect(es.url).toBe('/rooms/w1/events?last_event_id=1&client=alice')
    es.open()
    await flush()
    expect(seen.at(-1)).toEqual(['alice'])
    es.emit('presence.joined', { room: 'w1', person: 'bob', type: 'presence.joined' }, '')
    expect(seen.at(-1)).toEqual(['alice', 'bob'])
    es.emit('presence.left', { room: 'w1', person: 'alice', type: 'presence.left' }, '')
    expect(seen.at(-1)).toEqual(['bob'])
    expect(feed.cursor).toBe('1')
    const ev = server.upsert('c1', 'character', { name: 'Bo' })
    es.emit(ev.type, ev)
    expect(feed.cursor).toBe('2')
    expect(FakeEventSource.instances).toHaveLength(1)
    feed.stop()
  })
})

describe('mergePatch', () => {
  it('follows RFC 7386', () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { a: null, b: { c: 5, d: null }, e: [1] })).toEqual({
      b: { c: 5 },
      e: [1],
    })
    expect(mergePatch({ a: 1 }, 'x')).toBe('x')
  })
})

describe('RoomFeed: a feed the server refuses', () => {
  it.each([
    [403, 'forbidden'],
    [404, 'not_found'],
  ])('%i: status "error" with the problem, retried at the slowest pace, live again once it opens', async (status, code) => {
    const ctx = setup()
    const problems = []
    ctx.feed.on('problem', (p) => problems.push(p))
    const es = await startLive(ctx)
    es.fail() // a drop; the reopen is refused
    await vi.advanceTimersByTimeAsync(100)
    await flush()
    ctx.server.feedStatus = status
    FakeEventSource.last.fail()
    await flush()
    expect(ctx.feed.status).toBe('error')
    expect(ctx.feed.problem).toMatchObject({ status, code })
    // The attempt already scheduled goes ahead; once refused, the next comes after backoff.max.
    await vi.advanceTimersByTimeAsync(200)
    await flush()
    expect(FakeEventSource.instances).toHaveLength(3)
    FakeEventSource.last.fail()
    await flush()
    expect(ctx.feed.status).toBe('error')
    await vi.advanceTimersByTimeAsync(999)
    expect(FakeEventSource.instances).toHaveLength(3)
    await vi.advanceTimersByTimeAsync(1)
    await flush()
    expect(FakeEventSource.instances).toHaveLength(4)
    ctx.server.feedStatus = 200
    FakeEventSource.last.open()
    expect(ctx.feed.status).toBe('live')
    expect(ctx.feed.problem).toBeNull()
    expect(problems.map((p) => p?.status ?? null)).toEqual([status, null])
  })

  it('a web page where the feed should be (200 text/html): status "error" with not_a_feed, not connecting forever', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    ctx.server.feedPage = true
    es.fail()
    await vi.advanceTimersByTimeAsync(100)
    await flush()
    FakeEventSource.last.fail()
    await flush()
    expect(ctx.feed.status).toBe('error')
    expect(ctx.feed.problem).toMatchObject({ status: 200, code: 'not_a_feed' })
  })

  it('401: the first one refreshes the token, a second one in a row is "error"', async () => {
    const ctx = setup()
    ctx.feed.stop()
    let refreshes = 0
    const feed = new RoomFeed({
      room: 'w1',
      baseUrl: 'http://rf.test',
      EventSource: FakeEventSource,
      fetch: ctx.server.fetch,
      backoff: { min: 100, max: 1000 },
      window: null,
      isOnline: () => true,
      random: () => 1,
      token: ({ refresh } = {}) => (refresh ? `t${++refreshes}` : 't0'),
    })
    await feed.start()
    await flush()
    ctx.server.feedStatus = 401
    FakeEventSource.last.fail()
    await flush()
    expect(feed.status).toBe('connecting')
    await vi.advanceTimersByTimeAsync(100)
    await flush()
    expect(refreshes).toBe(1)
    expect(FakeEventSource.last.url).toContain('access_token=t1')
    FakeEventSource.last.fail()
    await flush()
    expect(feed.status).toBe('error')
    expect(feed.problem).toMatchObject({ status: 401, code: 'unauthorized' })
    feed.stop()
  })

  it('a transient failure (the URL answers 200 when asked) changes nothing', async () => {
    const ctx = setup()
    const es = await startLive(ctx)
    es.fail()
    await flush()
    expect(ctx.feed.status).toBe('reconnecting')
    expect(ctx.feed.problem).toBeNull()
  })

  it('a refused snapshot is a problem too (403 before any stream)', async () => {
    const ctx = setup()
    const real = ctx.server.fetch
    ctx.feed._fetch = async (url, init) =>
      url.endsWith('/elements') ? new Response('{"error":{"code":"forbidden","message":"no"}}', { status: 403 }) : real(url, init)
    await ctx.feed.start()
    await flush()
    expect(ctx.feed.status).toBe('error')
    expect(ctx.feed.problem).toMatchObject({ status: 403, code: 'forbidden' })
  })
})

describe('diffMergePatch', () => {
  it.each([
    [{ a: 1 }, { a: 1 }, undefined],
    [{ a: 1 }, { a: 2 }, { a: 2 }],
    [{ a: 1, b: 2 }, { a: 1 }, { b: null }],
    [{ s: { hp: 1, mp: 2 } }, { s: { hp: 3 } }, { s: { hp: 3, mp: null } }],
    [{ l: [1, 2] }, { l: [1] }, { l: [1] }],
    [{ l: [1] }, { l: [null] }, { l: [null] }],
    [{ a: 'x' }, { a: { b: 1 } }, { a: { b: 1 } }],
    [{ a: 1 }, { a: null }, null],
    [{}, { a: { b: null } }, null],
  ])('%j → %j: %j', (before, after, want) => {
    const got = diffMergePatch(before, after)
    expect(got).toEqual(want)
    if (got) expect(mergePatch(before, got)).toEqual(after)
  })
})

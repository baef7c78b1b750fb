import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { connect, createOutbox, historyPage, memoryStorage, roomRequest, RoomFeedError } from './index.js'
import { FakeEventSource, FakeServer, flush, multiFetch } from '../test/fakes.js'

let rf

beforeEach(() => FakeEventSource.reset())
afterEach(() => rf?.close())

function open(servers, opts = {}) {
  rf = connect({ baseUrl: 'http://feeds.test/', EventSource: FakeEventSource, fetch: multiFetch(servers), window: null, debounceMs: 0, ...opts })
  return rf
}

async function until(cond, what) {
  for (let i = 0; i < 200; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Follow room on the connection and open its stream: the room once live. */
async function followLive(room) {
  const feed = rf.follow(room)
  await until(() => FakeEventSource.instances.length === 1, 'the stream')
  FakeEventSource.last.open()
  await until(() => feed.status === 'live', 'live')
  return feed
}

describe('connect', () => {
  it('follows many rooms on one EventSource and applies snapshot then events', async () => {
    const servers = { a: new FakeServer('a'), b: new FakeServer('b') }
    servers.a.upsert('a1', 'character', { name: 'Aria' })
    open(servers, { client: 'bot' })
    expect(rf.baseUrl).toBe('http://feeds.test')
    const a = rf.follow('a')
    const b = rf.follow('b')
    expect(rf.follow('a')).toBe(a)
    await until(() => FakeEventSource.instances.length === 1, 'the stream')
    const es = FakeEventSource.last
    const url = new URL(es.url)
    expect(`${url.origin}${url.pathname}`).toBe('http://feeds.test/events')
    expect(url.searchParams.getAll('room')).toEqual(['a', 'b'])
    expect(url.searchParams.get('client')).toBe('bot')
    es.open()
    await until(() => a.status === 'live' && b.status === 'live', 'both rooms live')
    expect(a.elements.get('a1').data.name).toBe('Aria')
    const ev = servers.b.upsert('b1', 'item', { name: 'Lamp' })
    es.emit(ev.type, ev, `b:${ev.id}`)
    es.emit(ev.type, ev, `b:${ev.id}`) // a replay: applied once
    expect(b.elements.get('b1').data.name).toBe('Lamp')
    expect(b.cursor).toBe('1')
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(rf.leave('b')).toBe(true)
    expect(rf.leave('b')).toBe(false)
  })

  it('reads history pages to the head', async () => {
    const servers = { a: new FakeServer('a') }
    for (let i = 0; i < 5; i++) servers.a.upsert(`e${i}`, 'item', { n: i })
    open(servers)
    const first = await rf.historyPage('a', { after: 0, limit: 2 })
    expect(first).toMatchObject({ room: 'a', next: '2', head: '5', done: false })
    expect(first.events.map((e) => e.id)).toEqual(['1', '2'])
    const ids = []
    for await (const page of rf.history('a', { after: 1, limit: 2 })) ids.push(...page.events.map((e) => e.id))
    expect(ids).toEqual(['2', '3', '4', '5'])
    const q = servers.a.requests.at(-1).query
    expect([q.get('format'), q.get('after'), q.get('limit')]).toEqual(['json', '3', '2']) // the last page (4, 5) reached the head
  })

  it('history errors are RoomFeedError values', async () => {
    const fetch = async () =>
      new Response(JSON.stringify({ error: { code: 'history_trimmed', message: 'trimmed', oldest: '7' } }), { status: 410 })
    const err = await historyPage({ baseUrl: 'http://x', fetch, room: 'w1' }, { after: 1 }).catch((e) => e)
    expect(err).toBeInstanceOf(RoomFeedError)
    expect([err.status, err.code, err.details.oldest]).toEqual([410, 'history_trimmed', '7'])
  })

  it('an outbox on the connection writes with an Idempotency-Key and applies the answer to the room', async () => {
    const servers = { a: new FakeServer('a') }
    open(servers)
    const a = await followLive('a')
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null })
    await outbox.start()
    servers.a.loseAnswers = 1 // the first answer is lost: sent again with the same key
    const entry = await outbox.enqueue('a', { op: 'create', id: 'c1', kind: 'character', data: { name: 'Bea' }, base: 0 })
    const result = await outbox.settled(entry.key)
    expect(result.outcome).toBe('ack')
    const writes = servers.a.requests.filter((r) => r.method === 'PUT')
    expect(writes.length).toBe(2)
    expect(new Set(writes.map((w) => w.headers.get('Idempotency-Key'))).size).toBe(1)
    expect(servers.a.events.filter((e) => e.element?.id === 'c1')).toHaveLength(1) // committed once
    await flush()
    expect(a.elements.get('c1').data.name).toBe('Bea')
    outbox.stop()
  })

  it('writes go under the connection\'s client name (?client=, the actor of open mode), through the outbox and directly', async () => {
    const servers = { a: new FakeServer('a') }
    open(servers, { client: 'alice' })
    const a = await followLive('a')
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null })
    await outbox.start()
    const entry = await outbox.enqueue('a', { op: 'create', id: 'c1', kind: 'character', data: { name: 'Bea' }, base: 0 })
    expect((await outbox.settled(entry.key)).outcome).toBe('ack')
    rf.setClient('bob') // read at each send
    const second = await outbox.enqueue('a', { op: 'patch', id: 'c1', patch: { hp: 1 }, base: 1 })
    expect((await outbox.settled(second.key)).outcome).toBe('ack')
    await a.patch('c1', { hp: 2 })
    // Any write through a room's endpoint (the editor's undo and revert use it) carries the name; reads do not.
    expect(a.endpoint.client).toBe('bob')
    await roomRequest(a.endpoint, 'DELETE', '/elements/c1')
    await roomRequest(a.endpoint, 'GET', '/elements')
    const writes = servers.a.requests.filter((r) => r.method !== 'GET')
    expect(writes.map((w) => [w.method, w.query.get('client')])).toEqual([
      ['PUT', 'alice'],
      ['PATCH', 'bob'],
      ['PATCH', 'bob'],
      ['DELETE', 'bob'],
    ])
    expect(servers.a.requests.at(-1)).toMatchObject({ method: 'GET' })
    expect(servers.a.requests.at(-1).query.has('client')).toBe(false)
    outbox.stop()
  })

  it('the stream live again after an outage sends the outbox\'s waiting writes at once (not at the end of their backoff)', async () => {
    const servers = { a: new FakeServer('a') }
    open(servers, { backoff: { min: 1, max: 5 } })
    const a = await followLive('a')
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null, backoff: { min: 60000, max: 60000 } })
    await outbox.start()
    servers.a.down = true // the node is killed; the browser stays online
    FakeEventSource.last.fail()
    const entry = await outbox.enqueue('a', { op: 'create', id: 'c1', kind: 'character', data: { name: 'Bea' }, base: 0 })
    await until(() => outbox.state('a').blocked?.code === 'network_error', 'the outbox blocked')
    servers.a.down = false // restarted
    await until(() => FakeEventSource.instances.length >= 2, 'a reopened stream')
    FakeEventSource.last.open()
    expect((await outbox.settled(entry.key)).outcome).toBe('ack') // a 60 s backoff would time the test out
    expect(servers.a.events.filter((e) => e.element?.id === 'c1')).toHaveLength(1)
    outbox.stop()
  })

  it('without a client name, writes carry no ?client=', async () => {
    const servers = { a: new FakeServer('a') }
    open(servers)
    const outbox = createOutbox(rf, { storage: memoryStorage(), locks: null, channel: null, window: null })
    await outbox.start()
    const entry = await outbox.enqueue('a', { op: 'create', id: 'c1', kind: 'character', data: { name: 'Bea' }, base: 0 })
    expect((await outbox.settled(entry.key)).outcome).toBe('ack')
    const [put] = servers.a.requests.filter((r) => r.method === 'PUT')
    expect(put.query.has('client')).toBe(false)
    outbox.stop()
  })

  it('signals go to the room', async () => {
    const servers = { a: new FakeServer('a') }
    open(servers, { client: 'bot' })
    await rf.signal('a', 'cursor', { x: 1 })
    expect(servers.a.signals.map((s) => [s.type, s.data.x, s.person])).toEqual([['cursor', 1, 'bot']])
  })
})

import 'fake-indexeddb/auto'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  Outbox,
  diffPaths,
  indexedDbStorage,
  memoryStorage,
  patchLeaves,
  removeFromPatch,
  retryPolicy,
} from './outbox.js'
import { FakeServer, flush } from '../test/fakes.js'

/** Web Locks in one process: requests for one name run one after another. */
export function fakeLocks() {
  const tails = new Map()
  return {
    held: 0,
    request(name, fn) {
      const prev = tails.get(name) ?? Promise.resolve()
      const run = prev.then(async () => {
        this.held += 1
        try {
          return await fn()
        } finally {
          this.held -= 1
        }
      })
      tails.set(name, run.catch(() => {}))
      return run
    },
  }
}

/** BroadcastChannels between the outboxes of one test (the other "tabs"). */
export function fakeChannels() {
  const members = new Set()
  return () => {
    const ch = {
      onmessage: null,
      postMessage(msg) {
        const data = JSON.parse(JSON.stringify(msg))
        for (const o of members) if (o !== ch) queueMicrotask(() => o.onmessage?.({ data }))
      },
      close() {
        members.delete(ch)
      },
    }
    members.add(ch)
    return ch
  }
}

class FakeWindow extends EventTarget {}

let server, storage, net, win

function makeOutbox(opts = {}) {
  return new Outbox({
    baseUrl: '',
    fetch: server.fetch,
    token: null,
    storage,
    locks: null,
    channel: null,
    window: win,
    isOnline: () => net.online,
    backoff: { min: 100, max: 2000 },
    random: () => 1, // no jitter: delays are exactly min * 2^(n-1), capped
    ...opts,
  })
}

const writes = () => server.requests.filter((r) => r.method !== 'GET')
const keysSent = () => writes().map((r) => r.headers.get('Idempotency-Key'))

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
  server = new FakeServer('w1')
  server.upsert('c1', 'character', { name: 'Aria', description: 'scout' })
  server.upsert('c2', 'character', { name: 'Bo' })
  storage = memoryStorage()
  net = { online: true }
  win = new FakeWindow()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('retryPolicy: which failures are retried, kept for the user, or dropped', () => {
  it.each([
    [0, 'network_error', 'patch', 'retry'],
    [500, 'internal', 'patch', 'retry'],
    [502, 'http_502', 'patch', 'retry'],
    [503, 'database_unavailable', 'patch', 'retry'],
    [504, 'http_504', 'delete', 'retry'],
    [429, 'rate_limited', 'patch', 'retry'],
    [408, 'http_408', 'put', 'retry'],
    [409, 'idempotency_in_progress', 'patch', 'retry'],
    [401, 'token_expired', 'patch', 'retry'],
    [409, 'conflict', 'patch', 'conflict'],
    [412, 'version_mismatch', 'patch', 'conflict'],
    [412, 'version_mismatch', 'put', 'conflict'],
    [412, 'version_mismatch', 'delete', 'conflict'],
    [412, 'already_exists', 'create', 'drop'],
    [400, 'bad_data', 'patch', 'drop'],
    [403, 'forbidden', 'patch', 'drop'],
    [404, 'not_found', 'patch', 'drop'],
    [413, 'data_too_large', 'put', 'drop'],
    [415, 'http_415', 'patch', 'drop'],
    [422, 'idempotency_key_reused', 'patch', 'drop'],
    [409, 'something_else', 'patch', 'drop'],
  ])('%i %s (%s) → %s', (status, code, op, want) => {
    expect(retryPolicy({ status, code }, op)).toBe(want)
  })
})

describe('merge-patch helpers', () => {
  it('lists the leaves of a patch, removes paths from it and diffs values', () => {
    const patch = { name: 'A', stats: { hp: 3, mp: null }, tags: ['x'] }
    expect(patchLeaves(patch)).toEqual([
      { path: '/name', value: 'A' },
      { path: '/stats/hp', value: 3 },
      { path: '/stats/mp', value: null },
      { path: '/tags', value: ['x'] },
    ])
    expect(removeFromPatch(patch, ['/stats/hp', '/tags'])).toEqual({ name: 'A', stats: { mp: null } })
    expect(removeFromPatch(patch, ['/stats/hp', '/stats/mp'])).toEqual({ name: 'A', tags: ['x'] })
    expect(removeFromPatch({ stats: { hp: 3 } }, ['/stats'])).toEqual({})
    expect(diffPaths({ a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 4 }, e: true })).toEqual(['/b/c', '/b/d', '/e'])
  })
})

describe('Outbox', () => {
  it('stores an entry before sending it, sends it with its Idempotency-Key, and forgets it once acknowledged', async () => {
    const ob = makeOutbox()
    await ob.start()
    let release
    server.hold = new Promise((r) => (release = r))
    const acks = []
    ob.on('ack', (a) => acks.push(a))
    const entry = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Bea' }, base: 1 })
    expect(storage.map.has(entry.key)).toBe(true) // stored before the answer
    await flush()
    expect(ob.state('w1')).toMatchObject({ pending: 1, sending: true })
    const [req] = writes()
    expect(req.headers.get('Idempotency-Key')).toBe(entry.key)
    expect(req.headers.get('Op-ID')).toBe(entry.key)
    expect(req.headers.get('If-Match')).toBe('"1"')
    release()
    await flush()
    expect(storage.map.size).toBe(0)
    expect(ob.state('w1')).toMatchObject({ pending: 0, sending: false, blocked: null })
    expect(acks).toHaveLength(1)
    expect(acks[0]).toMatchObject({ room: 'w1', seq: 3, deleted: false, element: { id: 'c1', version: 2, data: { name: 'Bea' } } })
    expect(server.eventsOf(entry.key)).toHaveLength(1)
  })

  it('survives a reload while offline, then sends everything in order once online', async () => {
    net.online = false
    const first = makeOutbox()
    await first.start()
    await first.enqueue('w1', { op: 'create', id: 'i1', kind: 'item', data: { name: 'Lamp' }, base: 0 })
    await first.enqueue('w1', { op: 'patch', id: 'i1', patch: { name: 'Brass lamp' }, base: 0 })
    await first.enqueue('w1', { op: 'patch', id: 'c1', patch: { description: 'cartographer' }, base: 1 })
    await first.enqueue('w1', { op: 'delete', id: 'c2', base: 1 })
    await flush()
    expect(writes()).toHaveLength(0)
    expect(first.state('w1').blocked).toMatchObject({ code: 'offline' })
    first.stop() // the page goes away

    const second = makeOutbox()
    await second.start()
    expect(second.pending('w1').map((e) => e.op)).toEqual(['create', 'patch', 'patch', 'delete'])
    await flush()
    expect(writes()).toHaveLength(0)
    net.online = true
    win.dispatchEvent(new Event('online'))
    await flush(20)
    expect(writes().map((r) => `${r.method} ${r.path} ${r.headers.get('If-Match') ?? r.headers.get('If-None-Match')}`)).toEqual([
      'PUT /rooms/w1/elements/i1 *',
      'PATCH /rooms/w1/elements/i1 "1"', // rebased onto the version the create made
      'PATCH /rooms/w1/elements/c1 "1"',
      'DELETE /rooms/w1/elements/c2 "1"',
    ])
    expect(server.elements.get('i1').data).toEqual({ name: 'Brass lamp' })
    expect(server.elements.has('c2')).toBe(false)
    expect(storage.map.size).toBe(0)
  })

  it('retries network errors, 503 and 429 with backoff, honouring Retry-After; the queue waits behind its head', async () => {
    const ob = makeOutbox()
    await ob.start()
    server.fail(503, 'database_unavailable')
    server.fail(429, 'rate_limited', { retryAfter: 2 })
    const a = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'A' }, base: 1 })
    const b = await ob.enqueue('w1', { op: 'patch', id: 'c2', patch: { name: 'B' }, base: 1 })
    await flush()
    expect(keysSent()).toEqual([a.key]) // b waits behind a
    expect(ob.state('w1').blocked).toMatchObject({ status: 503, code: 'database_unavailable' })
    await vi.advanceTimersByTimeAsync(99)
    expect(keysSent()).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1) // first retry after min (100 ms)
    await flush()
    expect(keysSent()).toEqual([a.key, a.key])
    expect(ob.state('w1').blocked).toMatchObject({ status: 429 })
    await vi.advanceTimersByTimeAsync(1999) // Retry-After: 2 s beats the 200 ms backoff
    expect(keysSent()).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(1)
    await flush(10)
    expect(keysSent()).toEqual([a.key, a.key, a.key, b.key])
    expect(ob.state('w1')).toMatchObject({ pending: 0, blocked: null })
    expect(server.eventsOf(a.key)).toHaveLength(1)
  })

  it('reconnected(room): after an outage (network error, 5xx) the queue goes at once; a 429 keeps its Retry-After', async () => {
    const ob = makeOutbox({ backoff: { min: 10000, max: 30000 } })
    await ob.start()
    server.down = true
    const a = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'A' }, base: 1 })
    await flush()
    expect(ob.state('w1').blocked).toMatchObject({ status: 0, code: 'network_error' })
    expect(await ob.reconnected('w2')).toBe(false) // nothing waits there
    server.down = false
    server.fail(503, 'database_unavailable')
    expect(await ob.reconnected('w1')).toBe(true) // long before the 10 s backoff
    await flush()
    expect(keysSent()).toEqual([a.key, a.key]) // the first try never reached the server
    expect(ob.state('w1').blocked).toMatchObject({ status: 503 })
    expect(await ob.reconnected('w1')).toBe(true)
    await flush()
    expect(keysSent()).toEqual([a.key, a.key, a.key])
    expect(ob.state('w1')).toMatchObject({ pending: 0, blocked: null })

    server.fail(429, 'rate_limited', { retryAfter: 20 })
    const b = await ob.enqueue('w1', { op: 'patch', id: 'c2', patch: { name: 'B' }, base: 1 })
    await flush()
    expect(ob.state('w1').blocked).toMatchObject({ status: 429 })
    expect(await ob.reconnected('w1')).toBe(false)
    await flush()
    expect(keysSent()).toEqual([a.key, a.key, a.key, b.key]) // it waits for its Retry-After
    await vi.advanceTimersByTimeAsync(20000)
    await flush()
    expect(keysSent()).toEqual([a.key, a.key, a.key, b.key, b.key])
    expect(server.eventsOf(a.key)).toHaveLength(1)
    expect(server.eventsOf(b.key)).toHaveLength(1)
    ob.stop()
  })

  it('a write whose answer was lost is retried and replayed by the server: committed once', async () => {
    const ob = makeOutbox()
    await ob.start()
    server.loseAnswers = 1
    const settled = []
    const e = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Once' }, base: 1 })
    ob.settled(e.key).then((r) => settled.push(r))
    await flush()
    expect(ob.state('w1').blocked).toMatchObject({ code: 'network_error' })
    await vi.advanceTimersByTimeAsync(100)
    await flush()
    expect(keysSent()).toEqual([e.key, e.key])
    expect(server.eventsOf(e.key)).toHaveLength(1)
    expect(settled).toEqual([expect.objectContaining({ outcome: 'ack', replayed: true })])
    expect(server.elements.get('c1').version).toBe(2)
  })

  it('drops a write refused for good (4xx) with the error, and goes on with the next', async () => {
    const ob = makeOutbox()
    await ob.start()
    const refused = []
    ob.on('refused', (r) => refused.push(r))
    server.fail(403, 'forbidden')
    const a = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'No' }, base: 1 })
    const b = await ob.enqueue('w1', { op: 'patch', id: 'nope', patch: { name: 'Gone' }, base: 1 })
    const c = await ob.enqueue('w1', { op: 'patch', id: 'c2', patch: { name: 'Yes' }, base: 1 })
    await flush(20)
    expect(refused.map((r) => [r.entry.key, r.error.status, r.error.code])).toEqual([
      [a.key, 403, 'forbidden'],
      [b.key, 404, 'not_found'],
    ])
    expect(server.eventsOf(c.key)).toHaveLength(1)
    expect(storage.map.size).toBe(0)
  })

  it('two edits of one field from one window never conflict with each other (rebased on the own answer)', async () => {
    const ob = makeOutbox()
    await ob.start()
    net.online = false
    await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'One' }, base: 1 })
    await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Two' }, base: 1 })
    await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Three' }, base: 1 })
    net.online = true
    win.dispatchEvent(new Event('online'))
    await flush(20)
    expect(writes().map((r) => r.headers.get('If-Match'))).toEqual(['"1"', '"2"', '"3"'])
    expect(server.elements.get('c1')).toMatchObject({ version: 4, data: { name: 'Three' } })
    expect(ob.conflicts('w1')).toHaveLength(0)
  })

  describe('conflicts keep what the user typed', () => {
    async function conflicted() {
      const ob = makeOutbox()
      await ob.start()
      server.upsert('c1', 'character', { name: 'Theirs', description: 'scout', hp: 3 }) // v2, by someone else
      const conflicts = []
      ob.on('conflict', (c) => conflicts.push(c))
      const e = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Mine', hp: 7 }, base: 1 })
      await flush(10)
      return { ob, e, conflicts }
    }

    it('409 conflict becomes a stored record with theirs and mine; nothing was written', async () => {
      const { ob, e, conflicts } = await conflicted()
      expect(conflicts).toHaveLength(1)
      const [rec] = ob.conflicts('w1')
      expect(rec.key).toBe(e.key)
      expect(rec.conflict.conflicts).toEqual([
        { path: '/name', base: 'Aria', theirs: 'Theirs', mine: 'Mine' },
        { path: '/hp', theirs: 3, mine: 7 },
      ])
      expect(rec.conflict.current).toMatchObject({ version: 2 })
      expect(storage.map.get(e.key)).toMatchObject({ state: 'conflict' })
      expect(ob.state('w1')).toMatchObject({ pending: 0, conflicts: 1 })
      expect(server.elements.get('c1').version).toBe(2)
    })

    it('keep mine re-sends the change on the current version', async () => {
      const { ob, e } = await conflicted()
      const next = await ob.keepMine(e.key)
      await flush(10)
      expect(next.key).not.toBe(e.key)
      expect(writes().at(-1).headers.get('If-Match')).toBe('"2"')
      expect(server.elements.get('c1')).toMatchObject({ version: 3, data: { name: 'Mine', hp: 7, description: 'scout' } })
      expect(ob.entries('w1')).toHaveLength(0)
    })

    it('take theirs sends only what did not conflict, or nothing', async () => {
      const { ob, e } = await conflicted()
      // hp and name both conflict: nothing is left to send.
      expect(await ob.takeTheirs(e.key)).toBeNull()
      expect(ob.entries('w1')).toHaveLength(0)
      expect(server.elements.get('c1').version).toBe(2)

      server.upsert('c1', 'character', { name: 'Again', description: 'scout', hp: 3 }) // v3
      const e2 = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Mine2', description: 'mine too' }, base: 2 })
      await flush(10)
      await ob.takeTheirs(e2.key, { version: 3 })
      await flush(10)
      expect(server.elements.get('c1')).toMatchObject({ version: 4, data: { name: 'Again', description: 'mine too' } })
    })

    it('a 412 (server without merges, or base version gone) is turned into a conflict from the current element', async () => {
      server.merges = false
      const { ob } = await conflicted()
      const [rec] = ob.conflicts('w1')
      expect(rec.conflict.conflicts).toEqual([
        { path: '/name', theirs: 'Theirs', mine: 'Mine' },
        { path: '/hp', theirs: 3, mine: 7 },
      ])
      await ob.keepMine(rec.key)
      await flush(10)
      expect(server.elements.get('c1').data).toMatchObject({ name: 'Mine', hp: 7 })
    })

    it('a whole-element write (PUT) in conflict: take theirs keeps their field and sends the rest', async () => {
      const ob = makeOutbox()
      await ob.start()
      server.upsert('c1', 'character', { name: 'Theirs', description: 'scout' }) // v2
      const e = await ob.enqueue('w1', { op: 'put', id: 'c1', kind: 'character', data: { name: 'Mine', description: 'mine too' }, base: 1 })
      await flush(10)
      const [rec] = ob.conflicts('w1')
      expect(rec.conflict.conflicts).toEqual([{ path: '/name', base: 'Aria', theirs: 'Theirs', mine: 'Mine' }])
      await ob.takeTheirs(e.key)
      await flush(10)
      expect(server.elements.get('c1')).toMatchObject({ version: 3, data: { name: 'Theirs', description: 'mine too' } })
      expect(ob.entries('w1')).toEqual([])
    })

    it('a 412 for a change the element already has is forgotten without a word', async () => {
      server.merges = false
      const ob = makeOutbox()
      await ob.start()
      server.upsert('c1', 'character', { name: 'Same', description: 'scout' }) // v2 already says it
      const refused = []
      ob.on('refused', (r) => refused.push(r))
      const e = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Same' }, base: 1 })
      const settled = ob.settled(e.key)
      await flush(10)
      expect(await settled).toEqual({ outcome: 'superseded' })
      expect(refused).toEqual([])
      expect(ob.entries('w1')).toEqual([])
    })

    it('a delete of a changed element asks too (delete anyway = keep mine)', async () => {
      const ob = makeOutbox()
      await ob.start()
      server.upsert('c2', 'character', { name: 'Bo the brave' }) // v2 → v3? c2 was v1: now v2
      const e = await ob.enqueue('w1', { op: 'delete', id: 'c2', base: 1 })
      await flush(10)
      const [rec] = ob.conflicts('w1')
      expect(rec.conflict).toMatchObject({ delete: true, current: { version: 2 } })
      await ob.keepMine(e.key)
      await flush(10)
      expect(server.elements.has('c2')).toBe(false)
    })
  })

  describe('two tabs of one browser share the outbox', () => {
    it('with Web Locks: every entry is sent by one tab, once', async () => {
      const locks = fakeLocks()
      const channel = fakeChannels()
      const a = makeOutbox({ locks, channel })
      const b = makeOutbox({ locks, channel })
      await a.start()
      await b.start()
      const acksInB = []
      b.on('ack', (x) => acksInB.push(x))
      let release
      server.hold = new Promise((r) => (release = r))
      const keys = []
      for (let i = 0; i < 5; i++) {
        const ob = i % 2 ? b : a
        keys.push((await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { n: i }, base: null })).key)
        vi.advanceTimersByTime(1) // entries of two tabs are ordered by the time they were made
      }
      await flush(10)
      release()
      await flush(40)
      expect(keysSent()).toEqual(keys) // in order, each once
      for (const k of keys) expect(server.eventsOf(k)).toHaveLength(1)
      expect(storage.map.size).toBe(0)
      expect(a.entries('w1')).toHaveLength(0)
      expect(b.entries('w1')).toHaveLength(0)
      // B hears of the answers A received (to apply them without waiting for the feed).
      expect(acksInB.length).toBe(5)
    })

    it('without locks: a double send is harmless, the key makes the second a replay', async () => {
      net.online = false
      const seed = makeOutbox()
      await seed.start()
      const e = await seed.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Twice?' }, base: 1 })
      seed.stop()
      const a = makeOutbox()
      const b = makeOutbox()
      await a.start()
      await b.start()
      let release
      server.hold = new Promise((r) => (release = r))
      net.online = true
      win.dispatchEvent(new Event('online')) // both tabs send the same entry
      await flush(10)
      release()
      await flush(20)
      expect(keysSent()).toEqual([e.key, e.key])
      expect(server.eventsOf(e.key)).toHaveLength(1)
      expect(server.elements.get('c1')).toMatchObject({ version: 2, data: { name: 'Twice?' } })
      expect(storage.map.size).toBe(0)
    })
  })

  it('keeps its entries in IndexedDB across instances (a reload)', async () => {
    vi.useRealTimers()
    storage = indexedDbStorage({ dbName: `outbox-test-${Math.random()}` })
    net.online = false
    const first = makeOutbox()
    await first.start()
    const e = await first.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Stored' }, base: 1 })
    first.stop()
    const second = makeOutbox()
    await second.start()
    expect(second.pending('w1')).toEqual([expect.objectContaining({ key: e.key, patch: { name: 'Stored' } })])
    net.online = true
    win.dispatchEvent(new Event('online'))
    for (let i = 0; i < 50 && (await storage.all()).length; i++) await new Promise((r) => setTimeout(r, 5))
    expect(await storage.all()).toEqual([])
    expect(server.eventsOf(e.key)).toHaveLength(1)
  })
})

describe('Outbox: a write that hangs', () => {
  it('is given up after timeoutMs and sent again: the queue moves on, the write lands once', async () => {
    const ob = makeOutbox({ timeoutMs: 1000 })
    await ob.start()
    const real = server.fetch
    let hung = 0
    ob._fetch = (url, init) => {
      if (init.method === 'PATCH' && hung++ === 0) {
        return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))))
      }
      return real(url, init)
    }
    const e = await ob.enqueue('w1', { op: 'patch', id: 'c1', patch: { name: 'Late' }, base: 1 })
    await vi.advanceTimersByTimeAsync(999)
    expect(ob.state('w1').blocked).toBeNull()
    await vi.advanceTimersByTimeAsync(1)
    await flush()
    expect(ob.state('w1').blocked).toMatchObject({ code: 'network_error', message: expect.stringMatching(/no answer within 1000 ms/) })
    await vi.advanceTimersByTimeAsync(100)
    await flush()
    expect(server.eventsOf(e.key)).toHaveLength(1)
    expect(ob.entries('w1')).toEqual([])
  })
})

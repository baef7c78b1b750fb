import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Drafts, DRAFT_SIGNAL } from './drafts.js'
import { Emitter } from './emitter.js'
import { RoomFeedError } from './http.js'
import { RoomFeed } from './roomfeed.js'
import { FakeEventSource, FakeServer, flush } from '../test/fakes.js'

class FakeRoom extends Emitter {
  constructor() {
    super()
    this.sent = []
    this.fail = null
  }
  async signal(event, data) {
    this.sent.push({ event, data, at: Date.now() })
    if (this.fail) throw this.fail
    return {}
  }
}

const remote = (person, data) => ({ room: 'w1', type: DRAFT_SIGNAL, person, data: { tab: 'other', ...data }, at: 'now' })

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
})

afterEach(() => {
  vi.useRealTimers()
})

describe('Drafts: sending', () => {
  it('sends the first keystroke at once, then at most one signal per interval with the latest text', async () => {
    const room = new FakeRoom()
    const d = new Drafts({ room, interval: 200 })
    d.typing('c1', 'name', 'A')
    await vi.advanceTimersByTimeAsync(0)
    expect(room.sent.map((s) => s.data.value)).toEqual(['A'])
    expect(room.sent[0]).toMatchObject({ event: 'draft', data: { id: 'c1', field: 'name', state: 'typing', tab: d.tab } })
    // 20 keystrokes over one second: 5 signals at most, the last one with the final text.
    for (let i = 2; i <= 21; i++) {
      await vi.advanceTimersByTimeAsync(50)
      d.typing('c1', 'name', 'A'.repeat(i))
    }
    await vi.advanceTimersByTimeAsync(200)
    const values = room.sent.map((s) => s.data.value)
    expect(values.length).toBeLessThanOrEqual(7)
    expect(values.at(-1)).toBe('A'.repeat(21))
    for (let i = 1; i < room.sent.length; i++) expect(room.sent[i].at - room.sent[i - 1].at).toBeGreaterThanOrEqual(200)
  })

  it('end() cancels what is waiting and sends the end; a field never shared sends nothing', async () => {
    const room = new FakeRoom()
    const d = new Drafts({ room, interval: 200 })
    d.end('c1', 'name')
    expect(room.sent).toHaveLength(0)
    d.typing('c1', 'name', 'A')
    await vi.advanceTimersByTimeAsync(0)
    d.typing('c1', 'name', 'Ab') // waits for the interval...
    d.end('c1', 'name') // ...and is superseded by the end
    await vi.advanceTimersByTimeAsync(1000)
    expect(room.sent.map((s) => s.data.state)).toEqual(['typing', 'end'])
  })

  it('keeps an open draft alive, and pauses after a 429 for Retry-After', async () => {
    const room = new FakeRoom()
    const d = new Drafts({ room, interval: 200, keepAlive: 5000 })
    d.typing('c1', 'name', 'A')
    await vi.advanceTimersByTimeAsync(5000)
    expect(room.sent.map((s) => s.data.value)).toEqual(['A', 'A'])
    room.fail = new RoomFeedError('slow down', { status: 429, code: 'rate_limited', retryAfterMs: 1000 })
    d.typing('c1', 'name', 'Ab')
    await vi.advanceTimersByTimeAsync(200)
    room.fail = null
    const n = room.sent.length
    d.typing('c1', 'name', 'Abc')
    await vi.advanceTimersByTimeAsync(900)
    expect(room.sent.length).toBe(n)
    await vi.advanceTimersByTimeAsync(300)
    expect(room.sent.at(-1).data.value).toBe('Abc')
  })
})

describe('Drafts: receiving', () => {
  it('lists other people\'s drafts, ignores its own tab, clears on end, on leaving, and after ttl', async () => {
    const room = new FakeRoom()
    const d = new Drafts({ room, ttl: 15000 })
    const seen = []
    d.on('change', (list) => seen.push(list))
    room._emit('presence', ['alice', 'bob'])
    room._emit('signal', remote('alice', { id: 'c1', field: 'name', state: 'typing', value: 'Ari' }))
    room._emit('signal', remote('bob', { id: 'c1', field: 'description', state: 'typing', value: 'tall' }))
    room._emit('signal', { room: 'w1', type: 'draft', person: 'me', data: { tab: d.tab, id: 'c1', field: 'name', state: 'typing', value: 'own' } })
    room._emit('signal', { room: 'w1', type: 'other', person: 'bob', data: { id: 'x', field: 'y' } })
    expect(d.list()).toEqual([
      { id: 'c1', field: 'description', person: 'bob', value: 'tall', at: 'now' },
      { id: 'c1', field: 'name', person: 'alice', value: 'Ari', at: 'now' },
    ])
    room._emit('signal', remote('alice', { id: 'c1', field: 'name', state: 'end' }))
    expect(d.list().map((x) => x.person)).toEqual(['bob'])
    room._emit('presence', ['alice']) // bob left
    expect(d.list()).toEqual([])
    room._emit('signal', remote('alice', { id: 'c2', field: 'name', state: 'typing', value: 'Q' }))
    await vi.advanceTimersByTimeAsync(14999)
    expect(d.list()).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(d.list()).toHaveLength(0)
    expect(seen.length).toBeGreaterThanOrEqual(5)
  })

  it('on a RoomFeed: POST /signals with ?client=, and the feed\'s signal events (no id) reach the other window, never moving its cursor', async () => {
    const server = new FakeServer('w1')
    server.upsert('c1', 'character', { name: 'Aria' })
    const make = (client) =>
      new RoomFeed({ room: 'w1', baseUrl: '', client, EventSource: FakeEventSource, fetch: server.fetch, window: null, isOnline: () => true, signals: [DRAFT_SIGNAL] })
    FakeEventSource.reset()
    const a = make('alice')
    const b = make('bob')
    await a.start()
    await b.start()
    await flush()
    const [, esB] = FakeEventSource.instances
    esB.open()
    const ev = server.upsert('c2', 'character', { name: 'Bo' })
    esB.emit(ev.type, ev) // the stream's last id is now 2, also on the signals that follow
    server.onSignal = (sig) => esB.emit(sig.type, sig, '')
    const da = new Drafts({ room: a })
    const db = new Drafts({ room: b })
    da.typing('c1', 'name', 'Aria V')
    await vi.advanceTimersByTimeAsync(0)
    await flush()
    const post = server.requests.find((r) => r.method === 'POST')
    expect(post.path).toBe('/rooms/w1/signals')
    expect(post.query.get('client')).toBe('alice')
    expect(db.list()).toEqual([{ id: 'c1', field: 'name', person: 'alice', value: 'Aria V', at: expect.any(String) }])
    expect(b.cursor).toBe('2')
    da.end('c1', 'name')
    await flush()
    expect(db.list()).toEqual([])
    a.stop()
    b.stop()
  })
})

// Node.js 20 has no global EventSource: the client takes the one passed in,
// else the `eventsource` package's, else says so (status 'error', problem
// 'no_event_source') instead of connecting forever.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { FakeEventSource, FakeServer, multiFetch } from '../test/fakes.js'

const noPackage = () => {
  throw new Error("Cannot find package 'eventsource'")
}

beforeEach(() => {
  vi.resetModules()
  FakeEventSource.reset()
  expect(globalThis.EventSource).toBeUndefined() // the Node.js environment of these tests
})
afterEach(() => vi.doUnmock('eventsource'))

async function until(cond, what) {
  for (let i = 0; i < 200; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe('EventSource in Node.js', () => {
  it('without one and without the eventsource package: a typed error, and the room is "error" with problem no_event_source', async () => {
    vi.doMock('eventsource', noPackage)
    const { connect, RoomFeedError, describeProblem } = await import('./index.js')
    const rf = connect({ baseUrl: 'http://feeds.test', fetch: multiFetch({ a: new FakeServer('a') }), window: null, debounceMs: 0 })
    const err = await rf.eventSource().catch((e) => e)
    expect(err).toBeInstanceOf(RoomFeedError)
    expect(err.code).toBe('no_event_source')
    expect(err.message).toMatch(/pass one.*EventSource.*install the `eventsource` package/)
    const room = rf.follow('a')
    const errors = []
    room.on('error', (e) => errors.push(e))
    await until(() => room.status === 'error', 'the room refused')
    expect(room.problem).toMatchObject({ code: 'no_event_source', message: err.message })
    expect(errors.map((e) => e.code)).toEqual(['no_event_source'])
    expect(describeProblem(room.problem).action).toMatch(/eventsource/)
    rf.close()
  })

  it('a RoomFeed without one says so too', async () => {
    vi.doMock('eventsource', noPackage)
    const { RoomFeed } = await import('./index.js')
    const server = new FakeServer('w1')
    const feed = new RoomFeed({ room: 'w1', baseUrl: '', fetch: server.fetch, window: null })
    await feed.start()
    expect(feed.status).toBe('error')
    expect(feed.problem.code).toBe('no_event_source')
    expect(server.requests).toHaveLength(0) // nothing loaded that could never go live
    feed.stop()
  })

  it('uses the eventsource package when it is installed (its named export, as in v3+)', async () => {
    vi.doMock('eventsource', () => ({ EventSource: FakeEventSource }))
    const { connect } = await import('./index.js')
    const servers = { a: new FakeServer('a') }
    servers.a.upsert('c1', 'character', { name: 'Aria' })
    const rf = connect({ baseUrl: 'http://feeds.test', fetch: multiFetch(servers), window: null, debounceMs: 0 })
    expect(await rf.eventSource()).toBe(FakeEventSource)
    const room = rf.follow('a')
    await until(() => FakeEventSource.instances.length === 1, 'the stream')
    FakeEventSource.last.open()
    await until(() => room.status === 'live', 'live')
    expect(room.elements.get('c1').data.name).toBe('Aria')
    rf.close()
  })

  it('an EventSource passed in wins, and the package is never imported', async () => {
    const imported = vi.fn(noPackage)
    vi.doMock('eventsource', imported)
    const { connect } = await import('./index.js')
    const rf = connect({ baseUrl: 'http://feeds.test', EventSource: FakeEventSource, fetch: multiFetch({ a: new FakeServer('a') }), window: null, debounceMs: 0 })
    const room = rf.follow('a')
    await until(() => FakeEventSource.instances.length === 1, 'the stream')
    FakeEventSource.last.open()
    await until(() => room.status === 'live', 'live')
    expect(imported).not.toHaveBeenCalled()
    rf.close()
  })
})

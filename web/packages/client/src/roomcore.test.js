import { describe, expect, it } from 'vitest'
import { RoomCore } from './roomcore.js'
import { FakeServer } from '../test/fakes.js'

/** The smallest mode: start() loads the snapshot; events are fed in by hand; a jump is admitted as told. */
class ManualRoom extends RoomCore {
  constructor(opts) {
    super(opts)
    this.admitJumps = false
    this.asked = []
    this.ended = []
  }

  _begin() {
    return this._loadSnapshot(this._generation)
  }

  _end(wasRunning) {
    this.ended.push(wasRunning)
  }

  _admit(seq) {
    this.asked.push(seq)
    return this.admitJumps
  }
}

function setup() {
  const server = new FakeServer('w1')
  server.upsert('c1', 'character', { name: 'Aria' })
  const room = new ManualRoom({ room: 'w1', baseUrl: '', fetch: server.fetch, token: null })
  const applied = []
  room.on('event', (e) => applied.push(e.seq))
  return { server, room, applied }
}

describe('RoomCore', () => {
  it('applies each seq once and asks the mode only about a jump', async () => {
    const { server, room, applied } = setup()
    await room.start()
    expect(room.cursor).toBe('1')
    const e2 = server.upsert('c1', 'character', { name: 'Bob' })
    const e3 = server.upsert('c1', 'character', { name: 'Cy' })
    const e4 = server.upsert('c1', 'character', { name: 'Di' })
    room._applyPayload(e2, e2.type, 2)
    room._applyPayload(e2, e2.type, 2) // duplicate
    room._applyPayload(e4, e4.type, 4) // a jump: refused
    expect(room.asked).toEqual([4])
    expect(room.cursor).toBe('2')
    room._applyPayload(e3, e3.type, 3)
    room._applyPayload(e4, e4.type, 4)
    expect(room.asked).toEqual([4])
    room.admitJumps = true
    const e6 = { ...server.upsert('c1', 'character', { name: 'Ed' }), id: '6' }
    room._applyPayload(e6, e6.type, 6)
    expect(room.asked).toEqual([4, 6])
    expect(applied).toEqual([2, 3, 4, 6])
    expect(room.elements.get('c1').data.name).toBe('Ed')
  })

  it('an event without a seq is delivered but moves no cursor', async () => {
    const { room } = setup()
    await room.start()
    const got = []
    room.on('event', (e) => got.push(e))
    room._applyPayload({ data: { text: 'hi' } }, 'chat', null)
    expect(got).toEqual([{ data: { text: 'hi' }, type: 'chat', own: false }])
    expect(room.cursor).toBe('1')
    expect(room.asked).toEqual([])
  })

  it('start() and stop() run the mode once each; a snapshot read for a stopped room is dropped', async () => {
    const { room } = setup()
    const first = room.start()
    expect(room.start()).toBe(first)
    room.stop()
    await first
    expect(room.applied).toBeNull()
    room.stop()
    expect(room.ended).toEqual([true, false])
    expect(room.status).toBe('offline')
  })
})

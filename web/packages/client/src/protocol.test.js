// The protocol cases both clients pass: client/testdata/protocol-cases.json
// (the Go client package's TestProtocolCases reads the same file). Each case
// follows its rooms on one stream from empty snapshots at seq 0, receives
// the frames in order and must deliver exactly the expected events (each
// once, in order), presence changes and resets, ending at the cursor.
// The JS client always uses the multiplexed stream, whose ids are composite:
// a single-room case's plain id N is sent as "room:N".

import { readFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { connect } from './index.js'
import { FakeEventSource, FakeServer, multiFetch } from '../test/fakes.js'

const table = JSON.parse(readFileSync(new URL('../../../../client/testdata/protocol-cases.json', import.meta.url), 'utf8'))

let rf
beforeEach(() => FakeEventSource.reset())
afterEach(() => rf?.close())

async function until(cond, what) {
  for (let i = 0; i < 400; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe('protocol cases', () => {
  it('has cases', () => expect(table.cases.length).toBeGreaterThan(0))

  for (const tc of table.cases) {
    it(tc.name, async () => {
      const servers = Object.fromEntries(tc.rooms.map((r) => [r, new FakeServer(r)]))
      rf = connect({ baseUrl: 'http://feeds.test', EventSource: FakeEventSource, fetch: multiFetch(servers), window: null, debounceMs: 0 })
      const messages = [...new Set(tc.frames.map((f) => f.event).filter((t) => !t.startsWith('element.') && !t.startsWith('presence.') && t !== 'reset'))]
      const got = []
      const feeds = {}
      for (const room of tc.rooms) {
        const feed = rf.follow(room, { messages })
        feeds[room] = feed
        let people = []
        feed.on('event', (e) => got.push({ kind: 'event', room, seq: Number(e.seq), type: e.type }))
        feed.on('presence', (list) => {
          for (const p of list) if (!people.includes(p)) got.push({ kind: 'presence', room, type: 'presence.joined', person: p })
          for (const p of people) if (!list.includes(p)) got.push({ kind: 'presence', room, type: 'presence.left', person: p })
          people = [...list]
        })
        feed.on('error', (err) => {
          if (err?.code === 'reset') got.push({ kind: 'reset', room })
        })
      }
      await until(() => FakeEventSource.instances.length === 1, 'the stream')
      const es = FakeEventSource.last
      es.open()
      await until(() => tc.rooms.every((r) => feeds[r].status === 'live'), 'every room live')
      for (const f of tc.frames) {
        if (f.event === 'reset') servers[f.data.room].seq = tc.snapshot[f.data.room]
        const id = f.id === undefined ? '' : tc.rooms.length === 1 && !f.id.includes(':') ? `${tc.rooms[0]}:${f.id}` : f.id
        es.emit(f.event, f.data, id)
        if (f.event === 'reset') await until(() => feeds[f.data.room].status === 'live' && Number(feeds[f.data.room].cursor) >= tc.snapshot[f.data.room], 'the snapshot after the reset')
      }
      await until(() => got.length >= tc.expect.length, `${tc.expect.length} deliveries (have ${JSON.stringify(got)})`)
      expect(got).toEqual(tc.expect)
      expect(Object.fromEntries(tc.rooms.map((r) => [r, Number(feeds[r].cursor)]))).toEqual(tc.cursor)
    })
  }
})

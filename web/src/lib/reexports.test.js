// The modules that moved from web/src/lib to @roomfeed/client (bf833e4) are
// still importable from here, and are the package's own values (not copies).
import { describe, expect, it } from 'vitest'
import * as client from '@roomfeed/client'
import * as drafts from './drafts.js'
import * as emitter from './emitter.js'
import * as feedhub from './feedhub.js'
import * as http from './http.js'
import * as hubroom from './hubroom.js'
import * as outbox from './outbox.js'
import * as roomcore from './roomcore.js'
import * as roomfeed from './roomfeed.js'
import * as statecache from './statecache.js'
import * as token from './token.js'

const modules = {
  drafts: [drafts, ['Drafts', 'DRAFT_SIGNAL']],
  emitter: [emitter, ['Emitter']],
  feedhub: [feedhub, ['FeedHub', 'formatCompositeCursor', 'parseCompositeCursor']],
  http: [http, ['RoomFeedError', 'describeProblem', 'roomRequest', 'parseRetryAfter', 'probeStream']],
  hubroom: [hubroom, ['HubRoom']],
  outbox: [
    outbox,
    ['Outbox', 'createOutbox', 'memoryStorage', 'indexedDbStorage', 'defaultStorage', 'retryPolicy', 'newIdempotencyKey', 'diffPaths'],
  ],
  roomcore: [roomcore, ['RoomCore', 'ELEMENT_EVENTS', 'PRESENCE_EVENTS', 'isFatalProblem', 'parseSeq', 'newOpId', 'RoomFeedError']],
  roomfeed: [roomfeed, ['RoomFeed', 'mergePatch', 'diffMergePatch', 'RoomFeedError']],
  statecache: [statecache, ['stateCache']],
  token: [token, ['createTokenSource', 'toTokenSource', 'tokenExpiry']],
}

describe('web/src/lib re-exports @roomfeed/client', () => {
  for (const [name, [mod, names]] of Object.entries(modules)) {
    it(`${name}.js`, () => {
      expect(Object.keys(mod).sort()).toEqual([...names].sort())
      for (const n of names) {
        expect(mod[n], `${name}.js ${n}`).toBeDefined()
        expect(mod[n], `${name}.js ${n} is the package's`).toBe(client[n])
      }
    })
  }

  it('works through the old paths', async () => {
    const err = new http.RoomFeedError('gone', { status: 409, code: 'conflict' })
    expect(err).toBeInstanceOf(roomfeed.RoomFeedError)
    expect(err.isConflict).toBe(true)
    expect(roomfeed.mergePatch({ a: 1, b: 2 }, { b: null, c: 3 })).toEqual({ a: 1, c: 3 })
    expect(feedhub.parseCompositeCursor(feedhub.formatCompositeCursor([['w1', 4]]))).toEqual({ w1: 4 })
    const box = new outbox.Outbox({ baseUrl: 'http://127.0.0.1:1', fetch: async () => new Response('{}'), storage: outbox.memoryStorage() })
    expect(box).toBeInstanceOf(outbox.Outbox)
    expect(await token.toTokenSource('abc').get()).toBe('abc')
  })
})

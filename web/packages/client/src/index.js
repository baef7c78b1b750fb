// @roomfeed/client: a framework-free client of a roomfeed server, for
// browsers and Node.js 20+. See README.md.

export { connect } from './connect.js'
export { FeedHub, formatCompositeCursor, parseCompositeCursor } from './feedhub.js'
export { HubRoom } from './hubroom.js'
export { RoomCore, ELEMENT_EVENTS, PRESENCE_EVENTS, isFatalProblem, parseSeq, newOpId } from './roomcore.js'
export { RoomFeed, mergePatch, diffMergePatch } from './roomfeed.js'
export { RoomFeedError, describeProblem, roomRequest, parseRetryAfter, probeStream } from './http.js'
export { resolveEventSource, NO_EVENT_SOURCE } from './reconnect.js'
export { createTokenSource, toTokenSource, tokenExpiry } from './token.js'
export { historyPage, historyPages } from './history.js'
export {
  Outbox,
  createOutbox,
  memoryStorage,
  indexedDbStorage,
  defaultStorage,
  retryPolicy,
  newIdempotencyKey,
  diffPaths,
} from './outbox.js'
export { Drafts, DRAFT_SIGNAL } from './drafts.js'
export { stateCache } from './statecache.js'
export { Emitter } from './emitter.js'

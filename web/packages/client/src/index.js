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

// The public types (`import type { … } from '@roomfeed/client'`).
/** @typedef {import('./connect.js').ConnectOptions} ConnectOptions */
/** @typedef {import('./connect.js').Connection} Connection */
/** @typedef {import('./history.js').HistoryPage} HistoryPage */
/** @typedef {import('./types.js').RoomElement} RoomElement */
/** @typedef {import('./types.js').Status} Status */
/** @typedef {import('./types.js').Problem} Problem */
/** @typedef {import('./types.js').Snapshot} Snapshot */
/** @typedef {import('./types.js').Change} Change */
/** @typedef {import('./types.js').FeedEvent} FeedEvent */
/** @typedef {import('./types.js').SignalEvent} SignalEvent */
/** @typedef {import('./types.js').RoomEvents} RoomEvents */
/** @typedef {import('./types.js').HubEvents} HubEvents */
/** @typedef {import('./types.js').OutboxEntry} OutboxEntry */
/** @typedef {import('./types.js').OutboxAck} OutboxAck */
/** @typedef {import('./types.js').OutboxEvents} OutboxEvents */
/** @typedef {import('./types.js').Blocked} Blocked */
/** @typedef {import('./types.js').Draft} Draft */
/** @typedef {import('./token.js').TokenSource} TokenSource */
/** @typedef {import('./http.js').Endpoint} Endpoint */

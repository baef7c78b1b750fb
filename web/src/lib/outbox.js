// Moved to @roomfeed/client (web/packages/client/src/outbox.js, bf833e4); kept here for imports of web/src/lib.
export { Outbox, createOutbox, memoryStorage, indexedDbStorage, defaultStorage, retryPolicy, newIdempotencyKey, diffPaths } from '@roomfeed/client'

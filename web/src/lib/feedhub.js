// Moved to @roomfeed/client (web/packages/client/src/feedhub.js, bf833e4); kept here for imports of web/src/lib.
export { FeedHub, formatCompositeCursor, parseCompositeCursor } from '@roomfeed/client'

// Moved to @roomfeed/client (web/packages/client/src/statecache.js, bf833e4); kept here for imports of web/src/lib.
export { stateCache } from '@roomfeed/client'

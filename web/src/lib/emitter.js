// Moved to @roomfeed/client (web/packages/client/src/emitter.js, bf833e4); kept here for imports of web/src/lib.
export { Emitter } from '@roomfeed/client'

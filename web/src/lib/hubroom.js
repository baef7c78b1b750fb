// Moved to @roomfeed/client (web/packages/client/src/hubroom.js, bf833e4); kept here for imports of web/src/lib.
export { HubRoom } from '@roomfeed/client'

// Moved to @roomfeed/client (web/packages/client/src/http.js, bf833e4); kept here for imports of web/src/lib.
export { RoomFeedError, describeProblem, roomRequest, parseRetryAfter, probeStream } from '@roomfeed/client'

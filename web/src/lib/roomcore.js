// Moved to @roomfeed/client (web/packages/client/src/roomcore.js, bf833e4); kept here for imports of web/src/lib.
export { RoomCore, ELEMENT_EVENTS, PRESENCE_EVENTS, isFatalProblem, parseSeq, newOpId, RoomFeedError } from '@roomfeed/client'

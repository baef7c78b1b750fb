// Moved to @roomfeed/client (web/packages/client/src/roomfeed.js, bf833e4); kept here for imports of web/src/lib.
export { RoomFeed, mergePatch, diffMergePatch, RoomFeedError } from '@roomfeed/client'

// Moved to @roomfeed/client (web/packages/client/src/drafts.js, bf833e4); kept here for imports of web/src/lib.
export { Drafts, DRAFT_SIGNAL } from '@roomfeed/client'

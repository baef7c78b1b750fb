// Moved to @roomfeed/client (web/packages/client/src/token.js, bf833e4); kept here for imports of web/src/lib.
export { createTokenSource, toTokenSource, tokenExpiry } from '@roomfeed/client'

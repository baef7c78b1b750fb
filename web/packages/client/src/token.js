// Token sources for RoomFeed: where the client gets the JWT it sends as
// `Authorization: Bearer` on requests and as `?access_token=` on every
// EventSource (re)open (EventSource cannot set headers).
//
//   createTokenSource({ token: 'eyJ...' })                 // a fixed token
//   createTokenSource({ endpoint: '/auth/roomfeed-token' }) // fetched, refreshed before expiry
//
// A source is { get(): Promise<string|null>, refresh(): Promise<string|null> }.
// get() answers the cached token while it has more than `margin` ms left;
// refresh() fetches a new one (after a 401 or an auth_expired event). null
// means "no token" (the server's open development mode).

/** The exp claim of a JWT in ms since the epoch, or null when unreadable. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1]
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='))
    const exp = JSON.parse(json).exp
    return typeof exp === 'number' ? exp * 1000 : null
  } catch {
    return null
  }
}

const NO_TOKEN = Object.freeze({ get: async () => null, refresh: async () => null })

/**
 * Where a client gets its JWT: get() (cached while fresh), refresh() (a new one, after a 401).
 * @typedef {{ get: () => Promise<string | null>, refresh: () => Promise<string | null> }} TokenSource
 */

/**
 * @param {object} opts
 * @param {string} [opts.token] a fixed token
 * @param {string} [opts.endpoint] URL answering {"token":"..."} (or access_token, or the bare token as text)
 * @param {typeof fetch} [opts.fetch]
 * @param {number} [opts.margin] refresh this many ms before exp (default 30 s)
 * @param {() => number} [opts.now]
 * @returns {TokenSource}
 */
export function createTokenSource({
  token,
  endpoint,
  fetch = globalThis.fetch?.bind(globalThis),
  margin = 30000,
  now = Date.now,
} = {}) {
  if (!endpoint) {
    if (!token) return NO_TOKEN
    return { get: async () => token, refresh: async () => token }
  }
  let current = token || null
  let inflight = null
  const fresh = () => {
    if (!current) return false
    const exp = tokenExpiry(current)
    return exp === null || exp - now() > margin
  }
  const refresh = () => {
    inflight ??= (async () => {
      try {
        const res = await fetch(endpoint, { credentials: 'include', cache: 'no-store', headers: { Accept: 'application/json' } })
        if (!res.ok) throw new Error(`token endpoint answered ${res.status}`)
        const text = (await res.text()).trim()
        let tok = text
        if (text.startsWith('{')) {
          const body = JSON.parse(text)
          tok = body.token ?? body.access_token
        }
        if (!tok || typeof tok !== 'string') throw new Error('token endpoint answered no token')
        current = tok
        return tok
      } finally {
        inflight = null
      }
    })()
    return inflight
  }
  return {
    get: async () => (fresh() ? current : refresh()),
    refresh,
  }
}

/**
 * Accepts a token source, a function returning a token (or its promise), a string, or null.
 * @param {string | ((opts?: { refresh?: boolean }) => string | null | Promise<string | null>) | { get: Function, refresh?: Function } | null} [value]
 * @returns {TokenSource}
 */
export function toTokenSource(value) {
  if (value === undefined || value === null || value === '') return NO_TOKEN
  if (typeof value === 'string') return createTokenSource({ token: value })
  if (typeof value === 'function') return { get: async () => value(), refresh: async () => value({ refresh: true }) }
  if (typeof value.get === 'function') return { refresh: value.get, ...value }
  throw new TypeError('token: want a string, a function or { get, refresh }')
}

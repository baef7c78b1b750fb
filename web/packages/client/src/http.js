// HTTP to one roomfeed room, shared by the room clients (roomcore.js) and
// the outbox (outbox.js): the JSON error shape, the bearer token with one
// retry on 401 after a refresh, Retry-After, and the words a person reads
// when something fails (describeProblem).

/** An HTTP or network failure of a room request. status 0 = no answer. */
export class RoomFeedError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, code?: string, cause?: unknown, details?: any, retryAfterMs?: number|null }} [opts]
   */
  constructor(message, { status = 0, code = 'network_error', cause, details, retryAfterMs = null } = {}) {
    super(message, cause ? { cause } : undefined)
    this.name = 'RoomFeedError'
    this.status = status
    this.code = code
    /** The server's error object ({ code, message, conflicts, current, ... }), when it sent one. */
    this.details = details ?? null
    /** Retry-After in ms, when the answer carried one. */
    this.retryAfterMs = retryAfterMs
  }

  /** True for 409/412: the element changed since the version the write was based on. */
  get isConflict() {
    return this.status === 409 || this.status === 412
  }
}

/**
 * The server origin used when none is given: '' (the page's own origin in a
 * browser). Node.js has no page: give `baseUrl` there.
 */
export function defaultBaseUrl() {
  return ''
}

/** Retry-After (delta seconds or an HTTP date) in ms; null when absent or unreadable. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined || value === '') return null
  const s = String(value).trim()
  if (/^\d+$/.test(s)) return Number(s) * 1000
  const t = Date.parse(s)
  return Number.isNaN(t) ? null : Math.max(0, t - now)
}

/**
 * Where a room's requests go; client: the display name its writes carry as ?client= (the actor the
 * server records in open mode), '' for none.
 * @typedef {{ baseUrl: string, fetch: typeof fetch, tokens: import('./token.js').TokenSource, room: string, client?: string }} Endpoint
 */

/**
 * One request to a room: resolves to { body, headers, status } or throws a
 * RoomFeedError. A 401 with a token is retried once with a refreshed one. A
 * write (any method but GET) carries the endpoint's client name as ?client=
 * unless the query names one.
 *
 * @param {Endpoint} to
 * @param {string} method
 * @param {string} path below /rooms/{room}, e.g. "/elements"
 * @param {{ body?: *, headers?: object, query?: object, raw?: string, timeoutMs?: number }} [opts]
 *   raw: a body already encoded; timeoutMs: give up (as a network error) after this long
 */
export async function roomRequest(to, method, path, opts = {}, retried = false) {
  const { body, headers = {}, query, timeoutMs } = opts
  const h = { Accept: 'application/json', ...headers }
  const hasBody = body !== undefined || opts.raw !== undefined
  if (hasBody && !h['Content-Type']) h['Content-Type'] = 'application/json'
  let token
  try {
    token = await (retried ? to.tokens.refresh() : to.tokens.get())
  } catch (err) {
    throw new RoomFeedError(`token: ${err?.message ?? err}`, { code: 'token_error', cause: err })
  }
  if (token) h.Authorization = `Bearer ${token}`
  let url = `${to.baseUrl}/rooms/${encodeURIComponent(to.room)}${path}`
  const all = to.client && method !== 'GET' ? { client: to.client, ...query } : query
  const q = all ? new URLSearchParams(Object.entries(all).filter(([, v]) => v)).toString() : ''
  if (q) url += (url.includes('?') ? '&' : '?') + q
  let res
  let text = ''
  const ctl = timeoutMs ? new AbortController() : null
  const timer = ctl ? setTimeout(() => ctl.abort(), timeoutMs) : null
  try {
    res = await to.fetch(url, {
      method,
      headers: h,
      body: opts.raw !== undefined ? opts.raw : body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      ...(ctl ? { signal: ctl.signal } : {}),
    })
    text = await res.text()
  } catch (err) {
    const what = ctl?.signal.aborted ? `no answer within ${timeoutMs} ms` : (err?.message ?? err)
    throw new RoomFeedError(`network error: ${what}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
  let data = null
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = null
    }
  }
  if (res.status === 401 && token && !retried) {
    // Expired or revoked: one retry with a fresh token.
    return roomRequest(to, method, path, opts, true)
  }
  if (!res.ok) {
    const e = data?.error ?? {}
    throw new RoomFeedError(e.message || `HTTP ${res.status}`, {
      status: res.status,
      code: e.code || `http_${res.status}`,
      details: data?.error ?? null,
      retryAfterMs: parseRetryAfter(res.headers?.get?.('Retry-After')),
    })
  }
  return { body: data ?? {}, headers: res.headers, status: res.status }
}

/**
 * What went wrong, in words a person can act on: { title, action, kind }.
 * kind: 'auth' | 'forbidden' | 'not_found' | 'unavailable' | 'rate_limited'
 *       | 'offline' | 'refused'.
 */
export function describeProblem(err) {
  const status = err?.status ?? 0
  const code = err?.code ?? ''
  if (code === 'offline') {
    return { kind: 'offline', title: 'You are offline.', action: 'Keep editing: your changes are kept on this device and sent when the network is back.' }
  }
  if (code === 'not_a_feed') {
    return { kind: 'not_found', title: 'This address is not a roomfeed feed.', action: 'Check the server address in the settings (/config.json): it answers with a page, not events.' }
  }
  if (code === 'no_event_source') {
    return { kind: 'refused', title: 'This runtime has no EventSource.', action: 'Pass connect({ EventSource }) or install the `eventsource` package.' }
  }
  if (status === 0) {
    return { kind: 'unavailable', title: 'The server cannot be reached.', action: 'Your changes are kept on this device and sent as soon as it answers again.' }
  }
  if (status === 401 || code === 'token_expired' || code === 'auth_expired' || code === 'token_error') {
    return { kind: 'auth', title: 'Your sign-in has expired or is missing.', action: 'Sign in again (reload the page); your changes are kept and sent once you are signed in.' }
  }
  if (status === 403) {
    return { kind: 'forbidden', title: 'You do not have access to this world.', action: 'Ask its owner for access, or open another world.' }
  }
  if (status === 404) {
    return { kind: 'not_found', title: 'Not found on the server.', action: 'Check the address of the world, or that the server is a roomfeed server.' }
  }
  if (status === 429) {
    return { kind: 'rate_limited', title: 'Too many changes at once.', action: 'They are sent a little more slowly; nothing is lost.' }
  }
  if (status >= 500) {
    return { kind: 'unavailable', title: 'The server is unavailable right now.', action: 'Your changes are kept on this device and sent when it is back.' }
  }
  return { kind: 'refused', title: `The server refused the request (${err?.message || code || `HTTP ${status}`}).`, action: '' }
}

/**
 * Why an EventSource failed: EventSource hides the answer's status, so the
 * same URL is asked once with fetch and the stream, if it opens, is dropped
 * at once. Resolves to null when the URL answers 2xx (the failure was
 * transient), else { status, code, message, retryAfterMs } (status 0: no answer).
 */
export async function probeStream(fetch, url) {
  const ctl = new AbortController()
  try {
    const res = await fetch(url, { headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: ctl.signal })
    const type = res.headers?.get?.('Content-Type') ?? ''
    if (res.ok && type && !type.startsWith('text/event-stream')) {
      // A page (a web app's fallback, a proxy's login page) where a feed was expected.
      return { status: res.status, code: 'not_a_feed', message: `the server answered ${type.split(';')[0]}, not an event stream`, retryAfterMs: null }
    }
    if (res.ok) return null
    let body = null
    try {
      body = JSON.parse(await res.text())
    } catch {
      body = null
    }
    return {
      status: res.status,
      code: body?.error?.code || `http_${res.status}`,
      message: body?.error?.message || `HTTP ${res.status}`,
      retryAfterMs: parseRetryAfter(res.headers?.get?.('Retry-After')),
    }
  } catch (err) {
    return { status: 0, code: 'network_error', message: String(err?.message ?? err), retryAfterMs: null }
  } finally {
    ctl.abort()
  }
}

// The reconnecting side of an EventSource owner, shared by RoomFeed (a
// room's own stream) and FeedHub (one stream for many rooms): closing the
// stream, the capped and jittered backoff, the scheduled reopen, the
// browser's online/offline events, and a token that expired on the stream.
//
// An owner keeps its stream state in fields these functions read and write:
// _es, _timer, _attempt, _generation, _refreshToken, backoff, _random, _win,
// _isOnline, _onOnline, _onOffline, problem. It implements _active() (it
// follows something now), _isCurrent(gen), _connect(), _lostPlace() (called
// after four failed opens in a row: start over from a snapshot),
// _setStatus(status), _waitingStatus() and _emit(name, payload).

import { RoomFeedError, backoffDelay, isFatalProblem } from './roomcore.js'
import { probeStream } from './http.js'

/**
 * The stream options every owner takes, set on owner.
 * @param {any} owner
 * @param {{ EventSource?: any, backoff?: { min?: number, max?: number }, window?: EventTarget|null, isOnline?: () => boolean, random?: () => number }} opts
 */
export function initReconnect(owner, { EventSource, backoff = {}, window: win, isOnline, random }) {
  owner._EventSource = EventSource
  owner.backoff = { min: backoff.min ?? 500, max: backoff.max ?? 15000 }
  owner._win = win
  owner._isOnline = isOnline
  owner._random = random
  owner._es = null
  owner._timer = null // the scheduled reopen
  owner._attempt = 0 // failed opens in a row
  owner._refreshToken = false // the next open fetches a fresh token first
  owner._onOnline = () => goOnline(owner)
  owner._onOffline = () => goOffline(owner)
}

/** Listen to the browser's online/offline events (on), or stop (off). */
export function listenNetwork(owner, on) {
  const method = on ? 'addEventListener' : 'removeEventListener'
  owner._win?.[method]?.('online', owner._onOnline)
  owner._win?.[method]?.('offline', owner._onOffline)
}

export function clearTimer(owner) {
  if (owner._timer !== null) {
    clearTimeout(owner._timer)
    owner._timer = null
  }
}

/** Close the owner's EventSource, if any, so that none of its handlers runs again. */
export function closeStream(owner) {
  if (!owner._es) return
  const es = owner._es
  owner._es = null
  es.onopen = null
  es.onerror = null
  es.close()
}

/** Delay before reconnect attempt n: exponential from min, capped at max, jittered in [d/2, d]. */
export function nextDelay(owner, attempt) {
  return backoffDelay(owner.backoff, attempt, owner._random)
}

/** The stream failed: reopen it after the backoff (at the slowest pace while refused for good). */
export function scheduleReconnect(owner) {
  if (!owner._active()) return
  owner._closeStream()
  clearTimer(owner)
  if (!owner._isOnline()) {
    owner._setStatus('offline')
    return
  }
  owner._setStatus(owner._waitingStatus())
  // After several failed opens in a row, start over from a snapshot: a
  // cursor the server no longer accepts (a rebuilt database answers 400 to a
  // cursor ahead of it) must not keep the stream down.
  if (owner._attempt >= 4) owner._lostPlace()
  // Refused for good: try again at the slowest pace only.
  const delay = isFatalProblem(owner.problem) ? owner.backoff.max : owner.nextDelay()
  const gen = ++owner._generation
  owner._timer = setTimeout(() => {
    owner._timer = null
    if (owner._isCurrent(gen)) owner._connect()
  }, delay)
}

/** Why no stream can be opened here, and what to do about it. */
export const NO_EVENT_SOURCE =
  'no EventSource in this runtime: pass one (connect({ EventSource }) / new RoomFeed({ EventSource })) or install the `eventsource` package (npm install eventsource)'

let imported = null

/**
 * The EventSource class to use: the one given, else globalThis.EventSource
 * (browsers, Deno, Node.js with --experimental-eventsource), else the
 * `eventsource` package's (an optional peer dependency, imported once, by a
 * name bundlers do not try to resolve: browsers never need it). Rejects with
 * a RoomFeedError of code 'no_event_source' when there is none.
 * @param {any} [given]
 * @returns {Promise<any>}
 */
export async function resolveEventSource(given) {
  if (given) return given
  if (typeof globalThis.EventSource === 'function') return globalThis.EventSource
  const name = 'eventsource'
  imported ??= import(/* @vite-ignore */ /* webpackIgnore: true */ name).then(
    (m) => m.EventSource ?? m.default?.EventSource ?? m.default,
    () => null,
  )
  const ES = await imported
  if (typeof ES !== 'function') throw new RoomFeedError(NO_EVENT_SOURCE, { code: 'no_event_source' })
  return ES
}

/**
 * Make sure the owner has an EventSource class before an open (see
 * resolveEventSource). Without one the owner is refused for good: its
 * status is 'error', its problem and an 'error' event (also on each of
 * tell) say why, and nothing is retried. Resolves to whether the open of
 * generation gen goes on.
 */
export async function streamClass(owner, gen, tell = []) {
  if (owner._EventSource) return true
  try {
    owner._EventSource = await resolveEventSource()
  } catch (err) {
    if (!owner._isCurrent(gen)) return false
    owner._emit('error', err)
    for (const other of tell) other._emit('error', err)
    owner._setProblem(err)
    owner._setStatus('error')
    return false
  }
  return owner._isCurrent(gen)
}

/**
 * Fetch the token of the next open (a fresh one when the last was refused).
 * Resolves to whether the open of generation gen goes on; a token that
 * cannot be had schedules a reopen.
 */
export async function streamToken(owner, tokens, gen) {
  try {
    const refresh = owner._refreshToken
    owner._refreshToken = false
    owner._token = await (refresh ? tokens.refresh() : tokens.get())
  } catch (err) {
    if (!owner._isCurrent(gen)) return false
    owner._emit('error', new RoomFeedError(`token: ${err?.message ?? err}`, { code: 'token_error', cause: err }))
    owner._scheduleReconnect()
    return false
  }
  return owner._isCurrent(gen)
}

/**
 * Make the EventSource of generation gen on url: { es, guard }, where
 * guard(fn) drops the events of a stream that is no longer current; null
 * when it could not be made (a reopen is scheduled).
 */
export function openEventSource(owner, url, gen) {
  let es
  try {
    es = new owner._EventSource(url)
  } catch (err) {
    owner._emit('error', err)
    owner._scheduleReconnect()
    return null
  }
  owner._es = es
  const guard = (fn) => (ev) => {
    if (gen === owner._generation && owner._es === es) fn(ev)
  }
  return { es, guard }
}

/** The stream is open: the backoff and the problem are over. */
export function streamOpened(owner) {
  owner._attempt = 0
  owner._authFailures = 0
  owner._setProblem(null)
  owner._setStatus('live')
}

/** Ask why the stream at url never opened (401, 403, 404, 503…): see applyProbe. */
export async function probe(owner, fetch, url) {
  const gen = owner._generation
  const problem = await probeStream(fetch, url)
  if (!owner._active() || owner.status === 'live' || gen !== owner._generation) return
  applyProbe(owner, problem)
}

/**
 * What the probe of a stream that never opened found (http.js probeStream):
 * the first 401 in a row fetches a fresh token for the next attempt; a
 * cursor refused starts over from a snapshot; else it is the owner's problem.
 */
export function applyProbe(owner, problem) {
  if (!problem) return
  if (problem.status === 401 && owner._authFailures++ === 0) {
    owner._refreshToken = true
    return
  }
  if (problem.status === 400 && /cursor/.test(problem.code)) owner._lostPlace()
  owner._setProblem(problem)
  if (owner.status !== 'offline') owner._setStatus(owner._waitingStatus())
}

/** The browser went offline: close the stream and wait for 'online'. */
export function goOffline(owner) {
  if (!owner._active()) return
  owner._generation += 1
  owner._closeStream()
  clearTimer(owner)
  owner._setStatus('offline')
}

/** The browser is online again: reopen at once, the backoff starting over. */
export function goOnline(owner) {
  if (!owner._active()) return
  clearTimer(owner)
  owner._attempt = 0
  owner._setStatus(owner._waitingStatus())
  owner._connect()
}

/** The server ended the stream at the token's expiry: fetch a fresh token and reopen at once (the cursor is still good). */
export function authExpired(owner) {
  owner._emit('error', new RoomFeedError('feed token expired', { code: 'auth_expired' }))
  owner._closeStream()
  owner._refreshToken = true
  owner._connect()
}

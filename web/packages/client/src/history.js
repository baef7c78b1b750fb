// Pages of a room's history as JSON: GET /rooms/{room}/events?format=json
// &after=<seq>&limit=<n>. A page is { room, events, next, head }: `events`
// are the events' data objects (each with its `id`, the seq), `next` the
// cursor of the next page; the history is read to its end when next == head.
// A cursor older than the retained history is refused with 410 (a
// RoomFeedError with code "history_trimmed" or similar): start again from
// a snapshot.

import { roomRequest } from './http.js'
import { toTokenSource } from './token.js'

/**
 * One page of a room's history after `after` (a seq; 0 = from the start).
 *
 * @param {{ baseUrl?: string, fetch?: typeof fetch, token?: any, room: string }} to
 * @param {{ after?: number|string, limit?: number, type?: string }} [opts]
 * @returns {Promise<HistoryPage>}
 */
export async function historyPage(to, { after = 0, limit, type } = {}) {
  const query = { format: 'json', after: String(after) }
  if (limit !== undefined) query.limit = String(limit)
  if (type !== undefined) query.type = type
  const endpoint = {
    baseUrl: String(to.baseUrl ?? '').replace(/\/+$/, ''),
    fetch: to.fetch ?? globalThis.fetch?.bind(globalThis),
    tokens: to.tokens ?? toTokenSource(to.token),
    room: to.room,
  }
  const { body } = await roomRequest(endpoint, 'GET', '/events', { query })
  const events = Array.isArray(body.events) ? body.events : []
  const next = String(body.next ?? after)
  const head = String(body.head ?? next)
  return { room: body.room ?? to.room, events, next, head, done: next === head }
}

/**
 * Every page from `after` to the head as it was when each page was read:
 *   for await (const page of historyPages({ baseUrl, room: 'w1' })) ...
 *
 * @param {{ baseUrl?: string, fetch?: typeof fetch, token?: any, room: string }} to
 * @param {{ after?: number|string, limit?: number, type?: string }} [opts]
 * @returns {AsyncGenerator<HistoryPage>}
 */
export async function* historyPages(to, opts = {}) {
  let after = opts.after ?? 0
  for (;;) {
    const page = await historyPage(to, { ...opts, after })
    yield page
    if (page.done || page.next === String(after)) return
    after = page.next
  }
}

/**
 * @typedef {object} HistoryPage
 * @property {string} room
 * @property {Array<{ id: string, room: string, type: string, at?: string, element?: { id: string, kind: string, version: number, data: any }, [k: string]: any }>} events
 * @property {string} next the cursor of the next page
 * @property {string} head the room's newest seq when the page was read
 * @property {boolean} done next === head: nothing after this page (yet)
 */

// connect(): the front door of @roomfeed/client. One connection to a
// server (one EventSource on /events?room=a&room=b…, whatever the number of
// rooms followed), rooms followed on it, history pages and signals.
//
//   import { connect } from '@roomfeed/client'
//   const rf = connect({ baseUrl: 'https://feeds.example', token: () => getJwt() })
//   const room = rf.follow('w1')                 // snapshot, then live events
//   room.on('change', ({ id, element }) => ...)   // element null: deleted
//   await room.patch('c1', { hp: 9 })              // a direct write
//   for await (const page of rf.history('w1')) ...
//   rf.close()
//
// Writes that must survive a lost answer, a reload or an outage go through
// an Outbox (outbox.js: createOutbox(rf)): persisted first, sent with an
// Idempotency-Key, retried, conflicts kept.

import { FeedHub } from './feedhub.js'
import { historyPage, historyPages } from './history.js'
import { resolveEventSource } from './reconnect.js'

/**
 * @typedef {object} ConnectOptions
 * @property {string} [baseUrl] the server's origin, e.g. "https://feeds.example"; '' = the page's own (browsers only)
 * @property {string|Function|{get: Function, refresh?: Function}|null} [token] a JWT, a function returning one, or a token source (createTokenSource); none = open development mode
 * @property {any} [EventSource] the EventSource class (default: globalThis.EventSource, else the `eventsource` package's when it is installed; without either, every room is 'error' with problem code 'no_event_source')
 * @property {typeof fetch} [fetch] default: globalThis.fetch
 * @property {string} [client] the display name others see in presence (open mode; with tokens the server uses the token's subject)
 * @property {{min?: number, max?: number}} [backoff] reconnect delays in ms
 * @property {EventTarget|null} [window] where online/offline events come from (default: globalThis when it has them)
 * @property {() => boolean} [isOnline]
 * @property {number} [debounceMs] room-set changes within this window open one stream
 */

/**
 * Connect to a roomfeed server. Nothing is opened until a room is followed.
 *
 * @param {ConnectOptions} [options]
 */
export function connect(options = {}) {
  const hub = new FeedHub(options)
  /** @type {Map<string, import('./hubroom.js').HubRoom>} */
  const rooms = new Map()
  const to = (room) => ({ baseUrl: hub.baseUrl, fetch: hub.fetch, tokens: hub.tokens, room })

  return {
    /** The FeedHub that owns the one stream. */
    hub,
    /** The server's origin as given (no trailing slash). */
    baseUrl: hub.baseUrl,
    /** Where requests go: { baseUrl, fetch, tokens } (for an Outbox or historyPage). */
    endpoint: { baseUrl: hub.baseUrl, fetch: hub.fetch, tokens: hub.tokens },
    /** The rooms followed now, by id. */
    rooms,

    /**
     * Follow a room on the shared stream: its snapshot, then every event, in
     * order and exactly once. Following a followed room answers the same
     * client. options: { signals: ['cursor', …], messages: ['chat', …], presence }.
     *
     * @param {string} room
     * @param {{ signals?: string[], messages?: string[], presence?: boolean }} [opts]
     */
    follow(room, opts = {}) {
      let feed = rooms.get(room)
      if (!feed) {
        feed = hub.createFeed(room, opts)
        rooms.set(room, feed)
        feed.start()
      }
      return feed
    },

    /** Stop following a room (the stream is reopened without it). */
    /** @param {string} room */
    leave(room) {
      const feed = rooms.get(room)
      if (!feed) return false
      rooms.delete(room)
      feed.stop()
      return true
    },

    /** Send an ephemeral signal to everyone following the room now (never recorded). */
    /** @param {string} room @param {string} event @param {any} [data] */
    signal(room, event, data) {
      return (rooms.get(room) ?? hub.createFeed(room)).signal(event, data)
    },

    /** One page of a room's history (JSON): { room, events, next, head, done }. */
    /** @param {string} room @param {{ after?: number|string, limit?: number, type?: string }} [opts] */
    historyPage(room, opts) {
      return historyPage(to(room), opts)
    },

    /** Every page of a room's history from opts.after (default 0) to its head. */
    /** @param {string} room @param {{ after?: number|string, limit?: number, type?: string }} [opts] */
    history(room, opts) {
      return historyPages(to(room), opts)
    },

    /**
     * Resolves to the EventSource class the stream will use (given, global,
     * or the `eventsource` package's); rejects with a RoomFeedError of code
     * 'no_event_source' when there is none (then every followed room is
     * 'error' with that problem).
     */
    eventSource() {
      return resolveEventSource(hub._EventSource)
    },

    /** Set the presence name; the stream reopens under it. */
    /** @param {string} name */
    setClient(name) {
      hub.setClient(name)
    },

    /** Stop following every room and close the stream. */
    close() {
      for (const feed of rooms.values()) feed.stop()
      rooms.clear()
      hub.stop()
    },
  }
}

/** @typedef {ReturnType<typeof connect>} Connection */

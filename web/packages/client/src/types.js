// The shapes @roomfeed/client hands out, as JSDoc types (no code): the
// declarations in dist/ are generated from them, and index.js re-exports
// each one, so `import type { RoomElement, Change } from '@roomfeed/client'`
// works.

/**
 * An element of a room, as the server sends it.
 * @typedef {object} RoomElement
 * @property {string} id
 * @property {string} kind
 * @property {number} version
 * @property {Record<string, any>} data
 * @property {string} [updated_at]
 */

/**
 * Where a room client stands: connecting (never live yet), live,
 * reconnecting (was live), offline (the browser, or stopped), error (refused
 * for good as far as the client can tell: `problem` says why).
 * @typedef {'connecting' | 'live' | 'reconnecting' | 'offline' | 'error'} Status
 */

/**
 * Why a feed cannot be followed now (http.js terms); null once it works again.
 * @typedef {{ status: number, code: string, message: string }} Problem
 */

/**
 * A snapshot was applied.
 * @typedef {object} Snapshot
 * @property {string} cursor the room's seq the snapshot is at
 * @property {RoomElement[]} elements
 */

/**
 * One element changed in the confirmed state (element null: deleted).
 * @typedef {object} Change
 * @property {string} id
 * @property {RoomElement | null} element
 * @property {number | null} seq
 * @property {boolean} own this page wrote it
 * @property {'event' | 'write'} source from the feed, or from a write's answer
 */

/**
 * A feed event applied (element events and custom messages; signals have seq undefined).
 * @typedef {object} FeedEvent
 * @property {string} type e.g. 'element.updated', or a custom message name
 * @property {number} [seq]
 * @property {boolean} own
 * @property {string} [room]
 * @property {string} [op_id]
 * @property {RoomElement} [element]
 * @property {any} [data]
 */

/**
 * An ephemeral signal (never recorded, no seq).
 * @typedef {object} SignalEvent
 * @property {string} type the signal's name
 * @property {string} [room]
 * @property {any} data
 * @property {string} [person] who sent it
 * @property {string} [at]
 * @property {false} own
 */

/**
 * The events of a room client (RoomFeed, HubRoom): on(name, fn).
 * @typedef {object} RoomEvents
 * @property {Status} status
 * @property {Problem | null} problem
 * @property {Snapshot} snapshot
 * @property {Change} change
 * @property {FeedEvent | SignalEvent} event every applied feed event and every signal
 * @property {FeedEvent} message custom messages only
 * @property {SignalEvent} signal
 * @property {string[]} presence the people in the room, sorted
 * @property {Error} error diagnostics (a RoomFeedError, mostly); the client recovers on its own
 */

/**
 * The events of a FeedHub (the shared stream).
 * @typedef {object} HubEvents
 * @property {Status} status
 * @property {Problem | null} problem
 * @property {{ url: string, rooms: string[], cursor: string }} open a stream opened
 * @property {Error} error
 */

/**
 * An outbox entry: a write stored before it is sent.
 * @typedef {object} OutboxEntry
 * @property {string} key its Idempotency-Key (and Op-ID)
 * @property {string} room
 * @property {string} order sortable across tabs
 * @property {'create' | 'put' | 'patch' | 'delete'} op
 * @property {string} id the element's id
 * @property {string} [kind]
 * @property {any} [data]
 * @property {any} [patch]
 * @property {number | null} base the version the change started from (0: must not exist; null: unconditional)
 * @property {'pending' | 'conflict'} state
 * @property {number} attempts
 * @property {number} notBefore
 * @property {{ status: number, code: string, message: string }} [error]
 * @property {{ conflicts: Array<{ path: string, base?: any, theirs?: any, mine?: any }>, current: RoomElement | null, delete?: boolean }} [conflict]
 */

/**
 * Why a room's outbox waits (code 'offline' when the browser is offline); until: when it tries again.
 * @typedef {{ status: number, code: string, message: string, until: number | null }} Blocked
 */

/**
 * A write acknowledged (remote: by another tab).
 * @typedef {object} OutboxAck
 * @property {string} room
 * @property {OutboxEntry | { key: string, room: string }} entry
 * @property {RoomElement} element
 * @property {number | null} seq
 * @property {boolean} deleted
 * @property {number | null} [mergedFrom]
 * @property {boolean} [replayed]
 * @property {boolean} [remote]
 */

/**
 * The events of an Outbox.
 * @typedef {object} OutboxEvents
 * @property {{ room: string }} change the room's entries or state changed
 * @property {OutboxAck} ack
 * @property {{ room: string, entry: OutboxEntry, error: import('./http.js').RoomFeedError }} refused
 * @property {{ room: string, entry: OutboxEntry }} conflict
 * @property {Error} error
 */

/**
 * Someone else's typing in a field (Drafts).
 * @typedef {{ id: string, field: string, person: string, value: any, at: number }} Draft
 */

export {}

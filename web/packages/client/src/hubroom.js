// HubRoom: one room on a FeedHub's shared stream (made by hub.createFeed(room)).
//
// It has RoomFeed's public API (RoomCore's state, events, presence and
// writes; start()/stop()) but no EventSource of its own: start() attaches it
// to the hub, whose one multiplexed stream carries every room of the page.
// Its place on that stream is `_state`:
//   new      not exact: left out of the hub's composite cursor, its events
//            are dropped (the next snapshot holds them);
//   loading  the stream (with this room) is open and the snapshot is being
//            read; the room's events are buffered meanwhile;
//   ready    exact: the buffered events above the snapshot's cursor were
//            applied; events apply as they come, by the room's own seq.
// The server sends each room without holes, so a seq jump means events under
// names nobody listens to went by: it is accepted, never a reason to reopen.
// The status is the hub's, but 'live' only once the room is ready.
//
// The FeedHub drives it through _load(), _receive(payload), _invalidate(),
// _refreshStatus(), and RoomCore's _handlePresence(payload),
// _reloadPresence() and _emit('error', err); it reads `_state`, `_buffer`,
// `_messageNames` and `_presenceOn`.

import { RoomCore, parseSeq } from './roomcore.js'

export class HubRoom extends RoomCore {
  /**
   * @param {object} opts RoomCore's (room, baseUrl, fetch, messages, token), and:
   * @param {import('./feedhub.js').FeedHub} opts.hub the hub whose stream carries this room
   * @param {boolean} [opts.presence] keep `people` (default on; the name is the hub's `client`)
   * @param {string[]} [opts.signals] signal names to receive ('signal' events)
   * @param {string} opts.room
   * @param {string} [opts.baseUrl]
   * @param {typeof fetch} [opts.fetch]
   * @param {string[]} [opts.messages]
   * @param {any} [opts.token]
   */
  constructor({ hub, presence = true, signals = [], ...core }) {
    super({ ...core, presence })
    this._hub = hub
    this._signalNames = signals
    this._loadProblem = null // why this room's snapshot cannot be read, or null
    this._state = 'new'
    this._buffer = [] // this room's events while 'loading'
  }

  /** start(): attach to the hub. Resolves at once; the hub loads the snapshot once its stream (with this room) is open. */
  _begin() {
    this._state = 'new'
    this._buffer = []
    this._hub.attach(this)
    this._refreshStatus()
    return Promise.resolve()
  }

  /** stop(): detach from the hub (its stream reopens without this room). */
  _end(wasRunning) {
    this._state = 'new'
    this._buffer = []
    if (wasRunning) this._hub.detach(this)
  }

  /** Every seq jump is accepted: the hub's stream has no holes per room. */
  _admit() {
    return true
  }

  _apply(payload) {
    this._applyPayload(payload, payload.type, parseSeq(payload.id))
  }

  get clientName() {
    return this._hub.client
  }

  /** Follow the hub's status and problem: 'live' only once this room is exact. */
  _refreshStatus() {
    if (!this._running) return
    this._setProblem(this._hub.problem ?? this._loadProblem)
    const hs = this._hub.status
    if (hs === 'live' && this._state !== 'ready') this._setStatus(this._waitingStatus())
    else this._setStatus(hs)
  }

  /** This room's snapshot could not be read (err: RoomFeedError), or could (null). */
  _setLoadProblem(err) {
    this._loadProblem = err?.status ? err : null
    this._refreshStatus()
  }

  /**
   * The hub's stream (with this room) is open: load the snapshot, buffering
   * this room's events meanwhile. Rejects when the snapshot cannot be loaded
   * (the room stays 'loading' and keeps buffering; the hub retries).
   */
  async _load() {
    if (!this._running || this._state === 'ready') return
    if (this._state === 'new') {
      this._state = 'loading'
      this._buffer = []
    }
    const gen = this._generation
    this._refreshStatus()
    await this._loadSnapshot(gen)
    if (!this._isCurrent(gen) || this._state !== 'loading') return
    const buffered = this._buffer
    this._buffer = []
    this._state = 'ready'
    this._loadProblem = null
    // The snapshot was read after the stream opened, so the buffered events
    // continue it without a hole: skip those it already holds, apply the rest.
    for (const payload of buffered) this._apply(payload)
    this._refreshStatus()
  }

  /** A feed event for this room from the hub's stream. */
  _receive(payload) {
    if (!this._running) return
    if (this._state === 'loading') this._buffer.push(payload)
    else if (this._state === 'ready') this._apply(payload)
    // 'new': not on this stream yet, or its place was lost; the next snapshot holds it
  }

  /** The hub lost this room's place (reset, repeated failures, a new stream): snapshot again. */
  _invalidate() {
    this._generation += 1
    this._state = 'new'
    this._buffer = []
    this._refreshStatus()
  }
}

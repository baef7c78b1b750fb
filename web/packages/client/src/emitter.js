// A small named-event emitter shared by RoomCore (RoomFeed, HubRoom),
// FeedHub, Outbox and Drafts: listeners are called in order; one that throws
// is reported on 'error' instead of breaking the others.

/** @template {Record<string, any>} [E=Record<string, any>] the payload of each event name */
export class Emitter {
  constructor() {
    this._listeners = new Map()
  }

  /**
   * Subscribe to an event; returns the unsubscribe function.
   * @template {keyof E & string} K
   * @param {K} name
   * @param {(payload: E[K]) => void} fn
   * @returns {() => boolean}
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set())
    this._listeners.get(name).add(fn)
    return () => this._listeners.get(name)?.delete(fn)
  }

  /** @param {string} name @param {any} [payload] */
  _emit(name, payload) {
    for (const fn of [...(this._listeners.get(name) ?? [])]) {
      try {
        fn(payload)
      } catch (err) {
        if (name !== 'error') this._emit('error', err)
        else console.error(err)
      }
    }
  }
}

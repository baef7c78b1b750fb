// A small named-event emitter shared by RoomCore (RoomFeed, HubRoom) and
// FeedHub: listeners are called in order; one that throws is reported on
// 'error' instead of breaking the others.
export class Emitter {
  constructor() {
    this._listeners = new Map()
  }

  /**
   * Subscribe to an event; returns the unsubscribe function.
   * @param {string} name
   * @param {(payload: any) => void} fn
   * @returns {() => boolean}
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set())
    this._listeners.get(name).add(fn)
    return () => this._listeners.get(name)?.delete(fn)
  }

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

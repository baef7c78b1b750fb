// The last known state of each room, kept on this device so that a page
// opened or reloaded offline still shows the world (with the outbox's
// pending edits on top) until the feed catches up. Display only: a room
// client never starts from it; it always loads a fresh snapshot.
//
//   const cache = stateCache()              // IndexedDB ("roomfeed-cache"), or memory
//   await cache.save('w1', { cursor: '42', elements: [...] })
//   await cache.load('w1')                  // { cursor, elements, at } or null

import { createStore, get, set } from 'idb-keyval'

export function stateCache({ dbName = 'roomfeed-cache', storeName = 'rooms', now = Date.now } = {}) {
  if (!globalThis.indexedDB) {
    const map = new Map()
    return {
      async load(room) {
        return map.get(room) ?? null
      },
      async save(room, { cursor, elements }) {
        map.set(room, JSON.parse(JSON.stringify({ cursor, elements, at: now() })))
      },
    }
  }
  const store = createStore(dbName, storeName)
  return {
    async load(room) {
      try {
        return (await get(room, store)) ?? null
      } catch {
        return null
      }
    },
    async save(room, { cursor, elements }) {
      try {
        await set(room, { cursor, elements: JSON.parse(JSON.stringify(elements)), at: now() }, store)
      } catch {
        /* a full or blocked storage: the next snapshot tries again */
      }
    },
  }
}

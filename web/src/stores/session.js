// The page's session: the one FeedHub every room store shares (one
// EventSource for all rooms the page follows), the one Outbox every write of
// the page goes through (persisted in IndexedDB, shared with the other tabs),
// the display name people see in presence, and the pinned worlds of the
// sidebar. The name and the pins live in localStorage. A room on the shared
// connection and outbox:
//   const { hub, outbox } = useSessionStore()
//   useRoomStore(room, { hub, outbox })

import { markRaw, ref } from 'vue'
import { defineStore } from 'pinia'
import { FeedHub, Outbox, stateCache } from '@roomfeed/client'
import { isValidRoomId } from '@/lib/names.js'
import { appConfig, configTokenSource } from '@/config.js'

const NAME_KEY = 'roomfeed.name'
const PINS_KEY = 'roomfeed.pinned'

/** A display name is checked like an id by the server: letters, digits, "_", "." and "-". */
export function isValidName(name) {
  return isValidRoomId(name) && String(name).length <= 64
}

export function randomGuestName() {
  const n = new Uint16Array(1)
  globalThis.crypto.getRandomValues(n)
  return `guest-${String(1000 + (n[0] % 9000))}`
}

function storage() {
  try {
    return globalThis.localStorage ?? null
  } catch {
    return null
  }
}

function loadName() {
  const saved = storage()?.getItem(NAME_KEY)
  if (isValidName(saved)) return saved
  const name = randomGuestName()
  storage()?.setItem(NAME_KEY, name)
  return name
}

function loadPins() {
  try {
    const list = JSON.parse(storage()?.getItem(PINS_KEY) ?? '[]')
    return Array.isArray(list) ? [...new Set(list.filter(isValidRoomId))] : []
  } catch {
    return []
  }
}

/**
 * hubOptions (first call only) go to the FeedHub, e.g. { EventSource, fetch }
 * in tests; hubOptions.outbox: options of the Outbox (e.g. { storage }).
 */
export function useSessionStore({ outbox: outboxOptions = {}, ...hubOptions } = {}) {
  return defineStore('session', () => {
    const name = ref(loadName())
    const pinned = ref(loadPins())
    const cfg = appConfig()
    const hub = markRaw(new FeedHub({ client: name.value, baseUrl: cfg.serverUrl, token: configTokenSource(cfg), ...hubOptions }))
    const outbox = markRaw(
      new Outbox({
        baseUrl: hub.baseUrl,
        fetch: hub.fetch,
        token: hub.tokens,
        client: () => hub.client, // writes are recorded under the name people see (open mode)
        ...(hubOptions.window !== undefined ? { window: hubOptions.window } : {}),
        ...(hubOptions.isOnline ? { isOnline: hubOptions.isOnline } : {}),
        ...outboxOptions,
      }),
    )
    const cache = markRaw(stateCache())
    const status = ref(hub.status)
    hub.on('status', (s) => {
      status.value = s
    })

    /** Set the display name; false when it is not a valid name. */
    function setName(next) {
      next = String(next ?? '').trim()
      if (!isValidName(next)) return false
      name.value = next
      storage()?.setItem(NAME_KEY, next)
      hub.setClient(next)
      return true
    }

    function savePins() {
      storage()?.setItem(PINS_KEY, JSON.stringify(pinned.value))
    }

    function pin(room) {
      if (!isValidRoomId(room) || pinned.value.includes(room)) return
      pinned.value = [...pinned.value, room]
      savePins()
    }

    function unpin(room) {
      pinned.value = pinned.value.filter((r) => r !== room)
      savePins()
    }

    return { name, pinned, status, hub, outbox, cache, setName, pin, unpin }
  })()
}

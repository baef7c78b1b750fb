// Name rules of the roomfeed HTTP contract (DESIGN.md section 2).

export const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
export const KIND = /^[a-z][a-z0-9_-]{0,63}$/

export function isValidRoomId(id) {
  return ROOM_ID.test(String(id ?? ''))
}

export function isValidKind(kind) {
  return KIND.test(String(kind ?? ''))
}

/** A readable random world name such as "world-7k2m9x". */
export function randomRoomId() {
  const bytes = new Uint8Array(5)
  globalThis.crypto.getRandomValues(bytes)
  return 'world-' + [...bytes].map((b) => (b % 36).toString(36)).join('')
}

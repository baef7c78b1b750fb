// @vitest-environment jsdom
import { beforeEach, describe, expect, it } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { useSessionStore, isValidName } from './session.js'

beforeEach(() => {
  localStorage.clear()
  setActivePinia(createPinia())
})

describe('session store', () => {
  it('makes up a guest name once and keeps it', () => {
    const s = useSessionStore({ EventSource: class {} })
    expect(s.name).toMatch(/^guest-\d{4}$/)
    expect(localStorage.getItem('roomfeed.name')).toBe(s.name)
    expect(s.hub.client).toBe(s.name)
    setActivePinia(createPinia())
    expect(useSessionStore().name).toBe(s.name)
  })

  it('setName validates, stores and tells the hub', () => {
    const s = useSessionStore({ EventSource: class {} })
    expect(s.setName('not valid!')).toBe(false)
    expect(s.setName('  alice ')).toBe(true)
    expect(s.name).toBe('alice')
    expect(s.hub.client).toBe('alice')
    expect(localStorage.getItem('roomfeed.name')).toBe('alice')
    expect(isValidName('a'.repeat(65))).toBe(false)
    expect(s.outbox.clientName).toBe('alice') // writes go under the name people see
  })

  it('pins and unpins worlds in localStorage', () => {
    localStorage.setItem('roomfeed.pinned', JSON.stringify(['w1', 'bad id', 'w1']))
    const s = useSessionStore({ EventSource: class {} })
    expect(s.pinned).toEqual(['w1'])
    s.pin('w2')
    s.pin('w2')
    expect(JSON.parse(localStorage.getItem('roomfeed.pinned'))).toEqual(['w1', 'w2'])
    s.unpin('w1')
    expect(s.pinned).toEqual(['w2'])
  })
})

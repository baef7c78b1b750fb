// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import { nextTick, reactive } from 'vue'
import HistoryBar from './HistoryBar.vue'
import HistoryPanel from './HistoryPanel.vue'
import TimeView from './TimeView.vue'

/** A history store stand-in: the state the components read, the actions as spies. */
function fakeHistory(over = {}) {
  return reactive({
    undoStack: [{ id: 'c1', version: 2, name: 'Aria' }],
    nextUndo: { id: 'c1', version: 2, name: 'Aria' },
    canUndo: true,
    undoing: false,
    message: '',
    at: null,
    head: 7,
    panels: {},
    deleted: [],
    deletedLoading: false,
    deletedError: '',
    deletedPartial: false,
    watchingDeleted: false,
    undo: vi.fn(async () => true),
    showAt: vi.fn(),
    backToLive: vi.fn(),
    openHistory: vi.fn(),
    closeHistory: vi.fn(),
    older: vi.fn(),
    restore: vi.fn(),
    loadDeleted: vi.fn(),
    bringBack: vi.fn(),
    clearMessage: vi.fn(),
    ...over,
  })
}

let wrappers = []
afterEach(() => {
  for (const w of wrappers) w.unmount()
  wrappers = []
  document.body.innerHTML = ''
})

function mountWith(component, history, props = {}) {
  const w = mount(component, { props, global: { provide: { history } }, attachTo: document.body })
  wrappers.push(w)
  return w
}

function press(target, init = { key: 'z', ctrlKey: true }) {
  target.dispatchEvent(new KeyboardEvent('keydown', { bubbles: true, cancelable: true, ...init }))
}

describe('HistoryBar', () => {
  it.each([
    ['the page body', () => document.body, 1],
    ['a button', () => { const b = document.createElement('button'); document.body.append(b); return b }, 1],
    ['a checkbox', () => { const i = document.createElement('input'); i.type = 'checkbox'; document.body.append(i); return i }, 1],
    ['a text input', () => { const i = document.createElement('input'); document.body.append(i); return i }, 0],
    ['a textarea', () => { const t = document.createElement('textarea'); document.body.append(t); return t }, 0],
  ])('Ctrl+Z on %s: %i undo', (_, target, want) => {
    const h = fakeHistory()
    mountWith(HistoryBar, h)
    press(target())
    expect(h.undo).toHaveBeenCalledTimes(want)
  })

  it('ignores Shift+Ctrl+Z and Ctrl+Z while viewing the past, and disables Undo then', async () => {
    const h = fakeHistory()
    const w = mountWith(HistoryBar, h)
    press(document.body, { key: 'Z', ctrlKey: true, shiftKey: true })
    h.at = { seq: 2, elements: [], loading: false, error: '', oldest: null }
    await nextTick()
    press(document.body)
    expect(h.undo).not.toHaveBeenCalled()
    expect(w.get('[data-testid="undo"]').attributes('disabled')).toBeDefined()
  })

  it('the Undo button undoes, and is off with nothing to undo', async () => {
    const h = fakeHistory()
    const w = mountWith(HistoryBar, h)
    await w.get('[data-testid="undo"]').trigger('click')
    expect(h.undo).toHaveBeenCalledTimes(1)
    h.canUndo = false
    await nextTick()
    expect(w.get('[data-testid="undo"]').attributes('disabled')).toBeDefined()
  })
})

describe('HistoryPanel', () => {
  const element = { id: 'c1', kind: 'character', version: 3, data: { name: 'Aria B', hp: 5 } }
  const versions = [
    { version: 3, type: 'updated', actor: 'alice', at: '2026-12-02T03:00:03Z', kind: 'character', data: { name: 'Aria B', hp: 5 } },
    { version: 2, type: 'updated', actor: '', at: '2026-12-02T03:00:02Z', kind: 'character', data: { name: 'Aria B', hp: 3 } },
  ]

  it('shows who, the type and each diff; the last row is compared with the version below the page', async () => {
    const h = fakeHistory({ panels: { c1: { versions, base: { version: 1, kind: 'character', data: { name: 'Aria', hp: 3 } }, more: true, loading: false, error: '', note: '' } } })
    const w = mountWith(HistoryPanel, h, { element })
    expect(h.openHistory).toHaveBeenCalledWith('c1')
    const rows = w.findAll('[data-testid="version"]')
    expect(rows.map((r) => r.attributes('data-version'))).toEqual(['3', '2'])
    expect(rows[0].text()).toContain('alice')
    expect(rows[1].text()).toContain('someone')
    expect(rows[0].get('[data-testid="diff"]').text()).toBe('hp: 3 → 5')
    expect(rows[1].get('[data-testid="diff"]').text()).toBe('name: "Aria" → "Aria B"')
    // The current version cannot be restored; the older can, based on the version shown.
    expect(rows[0].find('[data-testid="restore"]').exists()).toBe(false)
    await rows[1].get('[data-testid="restore"]').trigger('click')
    expect(h.restore).toHaveBeenCalledWith('c1', 2, 3)
    await w.get('[data-testid="history-older"]').trigger('click')
    expect(h.older).toHaveBeenCalledWith('c1')
  })

  it('reloads when the element gets a new version, keeping what was said', async () => {
    const h = fakeHistory({ panels: { c1: { versions, base: null, more: false, loading: false, error: '', note: 'said' } } })
    const w = mountWith(HistoryPanel, h, { element })
    expect(w.get('[data-testid="history-note"]').text()).toBe('said')
    await w.setProps({ element: { ...element, version: 4 } })
    expect(h.openHistory).toHaveBeenLastCalledWith('c1', 'said')
  })
})

describe('TimeView', () => {
  it('shows the world as of a seq as text, marked read-only, with the way back', async () => {
    const h = fakeHistory({
      at: { seq: 2, loading: false, error: '', oldest: null, elements: [{ id: 'c1', kind: 'character', version: 1, data: { name: 'Aria', hp: 3, tags: ['a'] } }] },
    })
    const w = mountWith(TimeView, h)
    expect(w.get('[data-testid="time-banner"]').text()).toContain('Viewing as of seq 2')
    expect(w.findAll('input, textarea, select')).toHaveLength(0)
    expect(w.get('[data-testid="time-name"]').text()).toBe('Aria')
    expect(w.get('[data-field="tags"]').text()).toBe('["a"]')
    await w.get('[data-testid="time-back"]').trigger('click')
    expect(h.backToLive).toHaveBeenCalled()
  })

  it('says a trimmed seq in words and offers the oldest one', async () => {
    const h = fakeHistory({ at: { seq: 0, loading: false, error: 'The world can no longer be shown that far back', oldest: 3, elements: [] } })
    const w = mountWith(TimeView, h)
    expect(w.get('[data-testid="time-error"]').text()).toContain('no longer be shown')
    await w.get('[data-testid="time-oldest"]').trigger('click')
    expect(h.showAt).toHaveBeenCalledWith(3)
  })
})

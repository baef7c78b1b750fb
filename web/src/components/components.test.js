// @vitest-environment jsdom
import { describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import { createTestingPinia } from '@pinia/testing'
import { nextTick } from 'vue'
import ElementCard from './ElementCard.vue'
import RoomView from './RoomView.vue'
import StatusBadge from './StatusBadge.vue'
import PeopleList from './PeopleList.vue'
import NameField from './NameField.vue'
import { useRoomStore } from '@/stores/room.js'

const aria = { id: 'c1', kind: 'character', version: 3, data: { name: 'Aria', description: 'scout' } }

describe('ElementCard', () => {
  it('sends an edit on Enter, based on the version shown when editing began', async () => {
    const w = mount(ElementCard, { props: { element: aria } })
    const name = w.get('[data-testid="name"]')
    await name.trigger('focus')
    await w.setProps({ element: { ...aria, version: 4 } }) // a remote change while typing
    await name.setValue('Aria Vell')
    await name.trigger('blur')
    expect(w.emitted('edit')).toEqual([[{ name: 'Aria Vell' }, 3]])
  })

  it('keeps the draft while a remote change arrives, and Escape cancels', async () => {
    const w = mount(ElementCard, { props: { element: aria } })
    const name = w.get('[data-testid="name"]')
    await name.trigger('focus')
    await name.setValue('Draft')
    await w.setProps({ element: { ...aria, version: 4, data: { name: 'Remote' } } })
    expect(name.element.value).toBe('Draft')
    await name.trigger('keydown', { key: 'Escape' })
    await name.trigger('blur')
    await nextTick()
    expect(name.element.value).toBe('Remote')
    expect(w.emitted('edit')).toBeUndefined()
  })

  it('clearing the description removes the field; an empty name is refused', async () => {
    const w = mount(ElementCard, { props: { element: aria } })
    const desc = w.get('[data-testid="description"]')
    await desc.trigger('focus')
    await desc.setValue('')
    await desc.trigger('blur')
    const name = w.get('[data-testid="name"]')
    await name.trigger('focus')
    await name.setValue('   ')
    await name.trigger('blur')
    expect(w.emitted('edit')).toEqual([[{ description: null }, 3]])
  })

  it('emits remove from the delete button and marks pending cards', async () => {
    const w = mount(ElementCard, { props: { element: aria, pending: true } })
    expect(w.get('[data-testid="element"]').classes()).toContain('pending')
    await w.get('[data-testid="delete"]').trigger('click')
    expect(w.emitted('remove')).toHaveLength(1)
  })
})

describe('StatusBadge', () => {
  it('shows the status text', () => {
    const w = mount(StatusBadge, { props: { status: 'reconnecting' } })
    expect(w.get('[data-testid="status"]').text()).toBe('reconnecting')
  })
})

describe('PeopleList', () => {
  it('lists the people and marks this window\'s person', () => {
    const w = mount(PeopleList, { props: { people: ['alice', 'bob'], me: 'bob' } })
    expect(w.findAll('[data-testid="person"]').map((p) => p.attributes('data-person'))).toEqual(['alice', 'bob'])
    expect(w.get('.me').text()).toMatch(/bob \(you\)/)
    expect(w.get('[data-testid="people"]').attributes('data-count')).toBe('2')
  })
})

describe('NameField', () => {
  it('emits a valid new name on Enter and refuses an invalid one', async () => {
    const w = mount(NameField, { props: { name: 'guest-1234' } })
    const input = w.get('[data-testid="display-name"]')
    await input.setValue('no spaces allowed')
    await w.get('form').trigger('submit')
    expect(input.attributes('aria-invalid')).toBe('true')
    expect(w.emitted('change')).toBeUndefined()
    await input.setValue('alice')
    await w.get('form').trigger('submit')
    expect(w.emitted('change')).toEqual([['alice']])
  })
})

describe('RoomView', () => {
  function mountRoom(state) {
    const pinia = createTestingPinia({ createSpy: vi.fn, initialState: { 'room/w1': state } })
    const w = mount(RoomView, { props: { room: 'w1' }, global: { plugins: [pinia] } })
    return { w, store: useRoomStore('w1') }
  }

  it('lists elements grouped by kind with status and error', async () => {
    const { w, store } = mountRoom({
      loaded: true,
      status: 'live',
      error: 'Aria was changed by someone else in the meantime; your change was undone.',
      elements: {
        c1: aria,
        p1: { id: 'p1', kind: 'place', version: 1, data: { name: 'Harbor' } },
        x1: { id: 'x1', kind: 'faction', version: 1, data: { name: 'Guild' } },
      },
    })
    expect(store.start).toHaveBeenCalledOnce()
    expect(w.get('[data-testid="status"]').text()).toBe('live')
    expect(w.get('[data-testid="error"]').text()).toMatch(/someone else/)
    const kinds = w.findAll('section.kind').map((s) => s.attributes('data-testid'))
    expect(kinds).toEqual(['kind-character', 'kind-place', 'kind-faction'])
    expect(w.get('[data-testid="kind-character"] h2').text()).toMatch(/^characters/)
    await w.get('[data-testid="error-dismiss"]').trigger('click')
    expect(store.clearError).toHaveBeenCalled()
  })

  it('wires the create form, edits and deletes to the store', async () => {
    const { w, store } = mountRoom({ loaded: true, status: 'live', elements: { c1: aria } })
    await w.get('[data-testid="create-kind"]').setValue('item')
    await w.get('[data-testid="create-name"]').setValue('Rope')
    await w.get('[data-testid="create-form"]').trigger('submit')
    expect(store.create).toHaveBeenCalledWith('item', { name: 'Rope' })
    const name = w.get('[data-id="c1"] [data-testid="name"]')
    await name.trigger('focus')
    await name.setValue('Bea')
    await name.trigger('blur')
    expect(store.edit).toHaveBeenCalledWith('c1', { name: 'Bea' }, { baseVersion: 3 })
    await w.get('[data-id="c1"] [data-testid="delete"]').trigger('click')
    expect(store.remove).toHaveBeenCalledWith('c1')
  })

  it('shows the people in the world and pins it', async () => {
    const pinia = createTestingPinia({
      createSpy: vi.fn,
      initialState: { 'room/w1': { loaded: true, status: 'live', elements: {}, people: ['alice', 'bob'] }, session: { name: 'bob', pinned: [] } },
    })
    const w = mount(RoomView, { props: { room: 'w1' }, global: { plugins: [pinia] } })
    expect(w.findAll('[data-testid="person"]').map((p) => p.text())).toEqual(['Aalice', 'Bbob (you)'])
    await w.get('[data-testid="pin"]').trigger('click')
    const { useSessionStore } = await import('@/stores/session.js')
    expect(useSessionStore().pin).toHaveBeenCalledWith('w1')
  })

  it('says so when the world is empty, and stops the feed on unmount', () => {
    const { w, store } = mountRoom({ loaded: true, status: 'live', elements: {} })
    expect(w.find('[data-testid="empty"]').exists()).toBe(true)
    w.unmount()
    expect(store.stop).toHaveBeenCalledOnce()
  })
})

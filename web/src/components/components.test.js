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
    expect(w.emitted('edit')).toEqual([[{ name: 'Aria Vell' }, 3, 'name']])
    expect(w.emitted('typing')).toEqual([['name', 'Aria Vell']])
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
    expect(w.emitted('done')).toContainEqual(['name'])
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
    expect(w.emitted('edit')).toEqual([[{ description: null }, 3, 'description']])
  })

  const hero = {
    id: 'c2',
    kind: 'character',
    version: 7,
    data: { name: 'Hero', title: 'Sir', hp: 12, alive: true, stats: { str: 3, dex: 4 }, tags: ['brave'] },
  }

  it('shows every field of the data with an editor of its type', () => {
    const w = mount(ElementCard, { props: { element: hero } })
    const fields = w.findAll('[data-testid="field"]').map((f) => [f.attributes('data-field'), f.find('.field-editor').classes().find((c) => c.startsWith('type-'))])
    expect(fields).toEqual([
      ['alive', 'type-boolean'],
      ['hp', 'type-number'],
      ['stats', 'type-json'],
      ['tags', 'type-json'],
      ['title', 'type-string'],
    ])
    expect(w.get('[data-field="stats"] textarea').element.value).toBe('{"str":3,"dex":4}')
    expect(w.get('[data-field="alive"] input').element.checked).toBe(true)
  })

  it('edits numbers, booleans, objects and lists as minimal merge patches', async () => {
    const w = mount(ElementCard, { props: { element: hero } })
    const hp = w.get('[data-field="hp"] input')
    await hp.trigger('focus')
    await hp.setValue('12.5')
    await hp.trigger('blur')
    await w.get('[data-field="alive"] input').setValue(false)
    const stats = w.get('[data-field="stats"] textarea')
    await stats.trigger('focus')
    await stats.setValue('{"str": 5}')
    await stats.trigger('blur')
    const tags = w.get('[data-field="tags"] textarea')
    await tags.trigger('focus')
    await tags.setValue('["brave", "old"]')
    await tags.trigger('blur')
    expect(w.emitted('edit')).toEqual([
      [{ hp: 12.5 }, 7, 'hp'],
      [{ alive: false }, 7, 'alive'],
      [{ stats: { str: 5, dex: null } }, 7, 'stats'],
      [{ tags: ['brave', 'old'] }, 7, 'tags'],
    ])
  })

  it('refuses a number or JSON that does not parse and keeps the text', async () => {
    const w = mount(ElementCard, { props: { element: hero } })
    const hp = w.get('[data-field="hp"] input')
    await hp.trigger('focus')
    await hp.setValue('twelve')
    await hp.trigger('blur')
    expect(w.find('[data-testid="field-invalid"]').text()).toMatch(/Not a number/)
    expect(hp.element.value).toBe('twelve')
    const stats = w.get('[data-field="stats"] textarea')
    await stats.trigger('focus')
    await stats.setValue('{oops')
    await stats.trigger('blur')
    expect(w.emitted('edit')).toBeUndefined()
  })

  it('a value with a null inside an object is sent whole (PUT): a merge patch cannot say it', async () => {
    const w = mount(ElementCard, { props: { element: hero } })
    const stats = w.get('[data-field="stats"] textarea')
    await stats.trigger('focus')
    await stats.setValue('{"str": null}')
    await stats.trigger('blur')
    expect(w.emitted('replace')).toEqual([[{ kind: 'character', data: { ...hero.data, stats: { str: null } } }, 7, 'stats']])
  })

  it('adds and removes fields, and changes the kind', async () => {
    const w = mount(ElementCard, { props: { element: hero } })
    await w.get('[data-testid="add-field"]').trigger('click')
    await w.get('[data-testid="new-field-key"]').setValue('mana')
    await w.get('[data-testid="new-field-type"]').setValue('number')
    await w.get('[data-testid="new-field-value"]').setValue('30')
    await w.get('[data-testid="add-field-form"]').trigger('submit')
    await w.get('[data-testid="add-field"]').trigger('click')
    await w.get('[data-testid="new-field-key"]').setValue('hp')
    await w.get('[data-testid="add-field-form"]').trigger('submit')
    expect(w.get('[data-testid="new-field-problem"]').text()).toMatch(/already a field/)
    await w.get('[data-field="title"] [data-testid="field-remove"]').trigger('click')
    const kind = w.get('[data-testid="kind"]')
    await kind.trigger('focus')
    await kind.setValue('villain')
    await kind.trigger('blur')
    expect(w.emitted('edit')).toEqual([
      [{ mana: 30 }, 7, 'mana'],
      [{ title: null }, 7, 'title'],
    ])
    expect(w.emitted('replace')).toEqual([[{ kind: 'villain', data: hero.data }, 7, '#kind']])
  })

  it('asks before deleting, and sends the version shown', async () => {
    const w = mount(ElementCard, { props: { element: aria, pending: 2 } })
    expect(w.get('[data-testid="element"]').classes()).toContain('pending')
    expect(w.get('[data-testid="unsaved"]').text()).toMatch(/not yet saved \(2 changes\)/)
    await w.get('[data-testid="delete"]').trigger('click')
    expect(w.emitted('remove')).toBeUndefined()
    await w.get('[data-testid="delete-cancel"]').trigger('click')
    expect(w.find('[data-testid="delete-confirmation"]').exists()).toBe(false)
    await w.get('[data-testid="delete"]').trigger('click')
    await w.get('[data-testid="delete-confirm"]').trigger('click')
    expect(w.emitted('remove')).toEqual([[3]])
  })

  it('shows a conflict with theirs and mine and both ways out', async () => {
    const record = { key: 'k1', op: 'patch', conflicts: [{ path: '/name', base: 'Aria', theirs: 'Theirs', mine: 'Mine' }], current: aria }
    const w = mount(ElementCard, { props: { element: aria, conflicts: [record] } })
    const c = w.get('[data-testid="conflict"]')
    expect(c.get('[data-testid="theirs"]').text()).toBe('Theirs')
    expect(c.get('[data-testid="mine"]').text()).toBe('Mine')
    await c.get('[data-testid="keep-mine"]').trigger('click')
    await c.get('[data-testid="take-theirs"]').trigger('click')
    expect(w.emitted('keep-mine')).toEqual([['k1']])
    expect(w.emitted('take-theirs')).toEqual([['k1']])
  })

  it('previews someone else\'s typing, marked with their name, unless this window edits the field', async () => {
    const w = mount(ElementCard, { props: { element: aria, drafts: { name: [{ person: 'alice', value: 'Aria the' }] } } })
    const name = w.get('[data-testid="name"]')
    expect(name.element.value).toBe('Aria the')
    expect(w.get('[data-testid="draft-mark"]').text()).toMatch(/alice is editing/)
    expect(w.get('[data-testid="editors"]').text()).toBe('✎ alice')
    expect(w.get('[data-testid="editors"]').attributes('title')).toBe('alice is editing this card')
    await name.trigger('focus')
    expect(name.element.value).toBe('Aria')
    await w.setProps({ drafts: {} })
    expect(w.find('[data-testid="draft-mark"]').exists()).toBe(false)
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
    expect(store.endTyping).toHaveBeenCalledWith('c1', 'name', undefined) // (the spy's answer)
    await w.get('[data-id="c1"] [data-testid="delete"]').trigger('click')
    await w.get('[data-id="c1"] [data-testid="delete-confirm"]').trigger('click')
    expect(store.remove).toHaveBeenCalledWith('c1', { baseVersion: 3 })
  })

  it('shows the outbox: pending count, why it waits, and try now', async () => {
    const { w, store } = mountRoom({
      loaded: true,
      status: 'live',
      elements: { c1: aria },
      pending: { c1: 2 },
      outboxState: { pending: 2, conflicts: 0, sending: false, blocked: { status: 503, code: 'database_unavailable', message: 'x', until: null } },
    })
    const bar = w.get('[data-testid="outbox"]')
    expect(bar.get('[data-testid="pending-count"]').text()).toBe('2 changes not yet saved')
    expect(bar.get('[data-testid="blocked"]').text()).toMatch(/server is unavailable/)
    expect(w.get('[data-id="c1"] [data-testid="unsaved"]').text()).toMatch(/not yet saved/)
    await bar.get('[data-testid="retry-now"]').trigger('click')
    expect(store.retryNow).toHaveBeenCalled()
  })

  it('says in words why the feed is refused', () => {
    const { w } = mountRoom({
      loaded: false,
      status: 'error',
      elements: {},
      problem: { status: 403, code: 'forbidden', kind: 'forbidden', title: 'You do not have access to this world.', action: 'Ask its owner for access, or open another world.' },
    })
    expect(w.get('[data-testid="status"]').text()).toBe('error')
    expect(w.get('[data-testid="problem"]').text()).toMatch(/do not have access.*Ask its owner/)
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

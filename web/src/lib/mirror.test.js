import { describe, expect, it } from 'vitest'
import { nextTick, ref } from 'vue'
import { mirror } from './mirror.js'

describe('mirror', () => {
  it('starts as its source, can be edited, and follows a change of the source', async () => {
    const prop = ref('Aria')
    const draft = mirror(() => prop.value)
    expect(draft.value).toBe('Aria')
    draft.value = 'Ari' // the user types
    expect(prop.value).toBe('Aria')
    prop.value = 'Bram' // the prop changes
    await nextTick()
    expect(draft.value).toBe('Bram')
  })
})

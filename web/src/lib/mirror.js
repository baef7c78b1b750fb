import { ref, watch } from 'vue'

/** A ref that starts as source() and follows it when it changes: a draft of a prop the user may edit. */
export function mirror(source) {
  const draft = ref(source())
  watch(source, (v) => {
    draft.value = v
  })
  return draft
}

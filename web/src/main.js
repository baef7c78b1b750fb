import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import './assets/main.css'

createApp(App).use(createPinia()).mount('#app')

// The app shell is cached by a service worker (public/sw.js) so that the
// editor opens offline; writes made meanwhile wait in the outbox.
if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {
    /* no offline shell (e.g. an insecure origin): the editor works the same online */
  })
}

import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import './assets/main.css'
import { loadConfig } from './config.js'

// Where the server and its tokens are is read at run time (/config.json, a
// <meta> tag), so one build serves any server; VITE_* are only defaults.
loadConfig().then(() => createApp(App).use(createPinia()).mount('#app'))

// The app shell is cached by a service worker (public/sw.js) so that the
// editor opens offline; writes made meanwhile wait in the outbox.
if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {
    /* no offline shell (e.g. an insecure origin): the editor works the same online */
  })
}

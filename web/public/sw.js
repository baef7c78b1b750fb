// The editor's app shell for offline use: the page and its built assets,
// nothing else. The API (/rooms/..., /events) never goes through here: the
// outbox keeps writes made offline, and the feed catches up by itself.
//   navigation  network first, the cached page when there is no answer
//   /assets/*   cache first (names carry a content hash), cached on first use
// Installing reads "/" and caches the assets it names, so a page reloaded
// offline right after its first visit still opens.

const CACHE = 'roomfeed-shell-v1'

async function cacheShell() {
  const cache = await caches.open(CACHE)
  const res = await fetch('/', { cache: 'no-store' })
  if (!res.ok) return
  const html = await res.clone().text()
  await cache.put('/', res)
  const assets = new Set(['/favicon.svg'])
  for (const m of html.matchAll(/(?:src|href)="(\/[^"?#]+\.(?:js|css|svg|png|woff2?))"/g)) assets.add(m[1])
  await cache.addAll([...assets])
}

self.addEventListener('install', (event) => {
  event.waitUntil(cacheShell().then(() => self.skipWaiting()))
})

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key)
      await self.clients.claim()
    })(),
  )
})

self.addEventListener('fetch', (event) => {
  const req = event.request
  if (req.method !== 'GET') return
  const url = new URL(req.url)
  if (url.origin !== self.location.origin) return
  if (req.mode === 'navigate') {
    event.respondWith(
      fetch(req)
        .then((res) => {
          if (res.ok && res.headers.get('Content-Type')?.includes('text/html')) {
            const copy = res.clone()
            caches.open(CACHE).then((c) => c.put('/', copy))
          }
          return res
        })
        .catch(async () => (await caches.match('/', { ignoreVary: true })) ?? Response.error()),
    )
    return
  }
  if (url.pathname.startsWith('/assets/') || url.pathname === '/favicon.svg') {
    event.respondWith(
      caches.match(req, { ignoreVary: true }).then(
        (hit) =>
          hit ??
          fetch(req).then((res) => {
            if (res.ok) {
              const copy = res.clone()
              caches.open(CACHE).then((c) => c.put(req, copy))
            }
            return res
          }),
      ),
    )
  }
})

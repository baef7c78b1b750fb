// End-to-end tests of the shared connection and presence: one page follows
// ten rooms over ONE EventSource (the open world plus pinned worlds) and stays
// exact through a server restart; two pages see each other in the people list.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'
import {
  buildServer,
  launchBrowser,
  roomApi,
  serverState,
  startServer,
  tempDir,
  waitFor,
  waitForSameState,
  waitForStatus,
} from './harness.js'

const GRACE_MS = 500
const SERVER_ARGS = ['--presence-grace', `${GRACE_MS}ms`]

let tmp, bin, server, browser, db

before(async () => {
  tmp = await tempDir('roomfeed-e2e-multi-')
  bin = await buildServer(tmp.dir)
  db = path.join(tmp.dir, 'multi.db')
  server = await startServer({ bin, db, args: SERVER_ARGS })
  browser = await launchBrowser()
}, { timeout: 300000 })

after(async () => {
  await browser?.close()
  await server?.stop()
  await tmp?.cleanup()
})

/**
 * A browser context whose pages count their EventSources (constructed, and
 * open at the same time) and start with the given name and pinned worlds.
 */
async function newContext({ name, pinned = [] } = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } })
  await ctx.addInitScript(
    ({ name, pinned }) => {
      if (name) localStorage.setItem('roomfeed.name', name)
      if (pinned.length && !localStorage.getItem('roomfeed.pinned')) localStorage.setItem('roomfeed.pinned', JSON.stringify(pinned))
      const Native = window.EventSource
      const stats = { created: 0, alive: 0, maxAlive: 0, urls: [] }
      window.__eventSources = stats
      window.EventSource = class extends Native {
        constructor(url, init) {
          super(url, init)
          stats.created += 1
          stats.alive += 1
          stats.maxAlive = Math.max(stats.maxAlive, stats.alive)
          stats.urls.push(String(url))
        }
        close() {
          if (this.readyState !== 2 || !this.__closed) {
            if (!this.__closed) stats.alive -= 1
            this.__closed = true
          }
          super.close()
        }
      }
    },
    { name, pinned },
  )
  return ctx
}

async function open(ctx, base, room) {
  const page = await ctx.newPage()
  page.on('pageerror', (err) => console.log(`# page error: ${err.message}`))
  await page.goto(`${base}/?room=${encodeURIComponent(room)}`)
  await waitForStatus(page, 'live')
  return page
}

function esStats(page) {
  return page.evaluate(() => ({ ...window.__eventSources, urls: [...window.__eventSources.urls] }))
}

/** Every pinned entry shows its room's element count and cursor as the server has them. */
async function waitForPinnedExact(page, apis, timeoutMs = 15000) {
  let last = ''
  await waitFor(
    async () => {
      const shown = await page.$$eval('[data-testid="pinned"]', (els) =>
        Object.fromEntries(els.map((e) => [e.dataset.pinned, { count: e.dataset.count, cursor: e.dataset.cursor, status: e.dataset.status }])),
      )
      const bad = []
      for (const [room, api] of Object.entries(apis)) {
        const s = await api.snapshot()
        const mine = shown[room]
        if (!mine || mine.count !== String(s.elements.length) || mine.cursor !== s.cursor || mine.status !== 'live') {
          bad.push(`${room}: page ${JSON.stringify(mine)} server ${s.elements.length}@${s.cursor}`)
        }
      }
      last = bad.join('; ')
      return bad.length === 0
    },
    { timeoutMs, what: 'every pinned room exact' },
  ).catch((err) => {
    err.message += ` (${last})`
    throw err
  })
}

function people(page) {
  return page.$$eval('[data-testid="people"] [data-testid="person"]', (els) => els.map((e) => e.dataset.person).sort())
}

async function waitForPeople(page, want, timeoutMs) {
  const t0 = Date.now()
  await waitFor(async () => JSON.stringify(await people(page)) === JSON.stringify(want), {
    timeoutMs,
    intervalMs: 25,
    what: `people == ${want.join(', ')}`,
  })
  return Date.now() - t0
}

describe('many rooms on one connection, presence', { concurrency: false }, () => {
  test('one page follows 10 rooms over one EventSource and stays exact through a server restart', { timeout: 120000 }, async () => {
    const rooms = Array.from({ length: 10 }, (_, i) => `fleet-${i}`)
    const apis = Object.fromEntries(rooms.map((r) => [r, roomApi(server.url, r)]))
    for (const [i, r] of rooms.entries()) {
      await apis[r].put('place-0001', 'place', { name: `Port ${i}` })
      if (i % 2) await apis[r].put('character-0001', 'character', { name: `Captain ${i}` })
    }
    const ctx = await newContext({ name: 'admiral', pinned: rooms })
    const feedRequests = []
    ctx.on('request', (r) => {
      if (new URL(r.url()).pathname.endsWith('/events')) feedRequests.push(r.url())
    })
    const t0 = Date.now()
    const page = await open(ctx, server.url, rooms[0])
    await waitForPinnedExact(page, apis)
    const openMs = Date.now() - t0
    let stats = await esStats(page)
    assert.equal(stats.created, 1, `EventSources constructed: ${stats.urls.join('\n')}`)
    assert.equal(stats.maxAlive, 1)
    assert.equal(feedRequests.length, 1, 'one feed request for ten rooms')
    const url = new URL(stats.urls[0], server.url)
    assert.equal(url.pathname, '/events')
    assert.deepEqual(url.searchParams.getAll('room').sort(), [...rooms].sort())
    assert.equal(url.searchParams.get('client'), 'admiral')

    // Writes to all 10 rooms over HTTP (another client) appear.
    const t1 = Date.now()
    for (const [i, r] of rooms.entries()) {
      await apis[r].put(`item-${i}`, 'item', { name: `Cargo ${i}` })
      await apis[r].patch('place-0001', { description: `updated ${i}` })
    }
    await waitForPinnedExact(page, apis)
    const writesMs = Date.now() - t1
    await waitForSameState(page, apis[rooms[0]])

    // Server restart: stop it, restart at the same address, and write to
    // every room before and after the page is back.
    const cursorsBefore = Object.fromEntries(
      await Promise.all(rooms.map(async (r) => [r, await page.getAttribute(`[data-testid="pinned"][data-pinned="${r}"]`, 'data-cursor')])),
    )
    const stopped = await server.stop()
    assert.equal(stopped.code, 0)
    await waitForStatus(page, 'reconnecting', 10000)
    server = await startServer({ bin, db, port: server.port, args: SERVER_ARGS })
    for (const [i, r] of rooms.entries()) {
      await apis[r].patch('place-0001', { name: `Port ${i} (after restart)` })
      if (i % 3 === 0) await apis[r].del('place-0001')
    }
    const t2 = Date.now()
    await waitForStatus(page, 'live', 20000)
    for (const [i, r] of rooms.entries()) await apis[r].put(`item-late-${i}`, 'item', { name: `Late ${i}` })
    await waitForPinnedExact(page, apis, 20000)
    const recoverMs = Date.now() - t2
    stats = await esStats(page)
    assert.ok(stats.created >= 2, 'reopened after the restart')
    assert.equal(stats.maxAlive, 1, 'never more than one EventSource at a time')
    // The first reopen carried every room's cursor as held before the stop.
    const reopen = new URL(stats.urls[1], server.url).searchParams.get('last_event_id')
    const expected = rooms.map((r) => `${r}:${cursorsBefore[r]}`).sort().join(',')
    assert.equal(reopen.split(',').sort().join(','), expected)

    // Every room exactly as the server has it, element by element: open each
    // pinned world in turn (same connection, no reopen).
    const createdBefore = stats.created
    for (const r of rooms) {
      await page.click(`[data-testid="pinned"][data-pinned="${r}"] .pinned-open`)
      await page.waitForSelector(`section.room[data-room="${r}"]`)
      await waitForSameState(page, apis[r])
    }
    stats = await esStats(page)
    assert.equal(stats.created, createdBefore, 'switching between followed worlds reuses the connection')
    assert.equal(stats.maxAlive, 1)
    assert.equal(feedRequests.length, stats.created, 'every feed request is one of our EventSources (no per-room feeds)')
    const total = (await Promise.all(rooms.map((r) => serverState(apis[r])))).reduce((n, s) => n + s.elements.length, 0)
    console.log(
      `# 10 rooms on 1 EventSource: exact after open in ${openMs} ms, 20 writes in ${writesMs} ms, ` +
        `restart recovered in ${recoverMs} ms (${stats.created} streams over the test, ${feedRequests.length} feed requests, ${total} elements)`,
    )
    await ctx.close()
  })

  test('two pages see each other in the people list; one leaving disappears within the grace period', { timeout: 60000 }, async () => {
    const room = 'lobby'
    const ctxA = await newContext({ name: 'alice' })
    const ctxB = await newContext()
    const a = await open(ctxA, server.url, room)
    const b = await open(ctxB, server.url, room)
    const guest = await b.inputValue('[data-testid="display-name"]')
    assert.match(guest, /^guest-\d{4}$/)
    await waitForPeople(a, ['alice', guest].sort(), 5000)
    await waitForPeople(b, ['alice', guest].sort(), 5000)

    // B takes a name: it reopens under it; A sees bob join, and the guest
    // leave once the grace period is over.
    await b.fill('[data-testid="display-name"]', 'bob')
    await b.press('[data-testid="display-name"]', 'Enter')
    assert.equal(await b.evaluate(() => localStorage.getItem('roomfeed.name')), 'bob')
    await waitForPeople(a, ['alice', 'bob'], GRACE_MS + 4000)
    await waitForPeople(b, ['alice', 'bob'], GRACE_MS + 4000)
    assert.equal(await a.textContent('[data-testid="people"] .me'), 'Aalice (you)')

    // B leaves: gone from A within the grace period and a bit.
    const t0 = Date.now()
    await ctxB.close()
    await waitForPeople(a, ['alice'], GRACE_MS + 2500)
    const leftMs = Date.now() - t0
    const res = await fetch(`${server.url}/rooms/${room}/presence`)
    assert.deepEqual((await res.json()).people, ['alice'])
    console.log(`# presence: bob left A's people list ${leftMs} ms after closing (grace ${GRACE_MS} ms)`)
    await ctxA.close()
  })
})

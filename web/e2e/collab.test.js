// End-to-end tests of editing together: the outbox through an offline period
// with a reload and through a database outage, conflicts that keep the
// user's text, live previews of typing, the whole-element editor's data
// types, and feeds the server refuses. Real server (SQLite, and PostgreSQL
// behind a TCP proxy for the outage), headless Chromium.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import {
  WEB_DIR,
  buildServer,
  feedHistory,
  freePorts,
  launchBrowser,
  psql,
  roomApi,
  startServer,
  tcpProxy,
  tempDir,
  waitFor,
  statusOf,
  waitForSameState,
  waitForStatus,
} from './harness.js'

const ARTIFACTS = path.join(WEB_DIR, 'e2e', 'artifacts')

let tmp, bin, server, browser
let roomNo = 0
const newRoom = (name) => `${name}-${++roomNo}`

before(async () => {
  tmp = await tempDir('roomfeed-e2e-collab-')
  bin = await buildServer(tmp.dir)
  server = await startServer({ bin, db: path.join(tmp.dir, 'collab.db'), args: ['--presence-grace', '500ms'] })
  browser = await launchBrowser()
}, { timeout: 300000 })

after(async () => {
  await browser?.close()
  await server?.stop()
  await tmp?.cleanup()
})

/** A browser context (one "browser" of one person) with that display name. */
async function newContext(name, viewport = { width: 1000, height: 800 }) {
  const ctx = await browser.newContext({ viewport })
  await ctx.addInitScript((n) => localStorage.setItem('roomfeed.name', n), name)
  return ctx
}

async function openPage(ctx, base, room, { status = 'live' } = {}) {
  const page = await ctx.newPage()
  page.on('pageerror', (err) => console.log(`# page error: ${err.message}`))
  await page.goto(`${base}/?room=${encodeURIComponent(room)}`)
  if (status) await waitForStatus(page, status, 15000)
  return page
}

const card = (page, id) => page.locator(`[data-testid="element"][data-id="${id}"]`)

/** Type into a field of a card and commit it (Enter). */
async function commitField(page, id, testid, value) {
  const input = card(page, id).getByTestId(testid)
  await input.fill(value)
  await input.press('Enter')
}

/** Type into an "other" field of a card (FieldEditor by data-field) and commit it. */
async function commitOther(page, id, field, value) {
  const input = card(page, id).locator(`[data-field="${field}"] [data-testid="field-input"]`)
  await input.fill(value)
  // JSON fields commit with Ctrl+Enter (Enter is a new line there).
  await input.press((await input.evaluate((el) => el.tagName)) === 'TEXTAREA' ? 'Control+Enter' : 'Enter')
}

/** The outbox entries stored in this page's IndexedDB. */
function storedEntries(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('roomfeed-outbox')
        open.onerror = () => reject(open.error)
        open.onsuccess = () => {
          const db = open.result
          if (!db.objectStoreNames.contains('entries')) return resolve([])
          const req = db.transaction('entries').objectStore('entries').getAll()
          req.onsuccess = () => resolve(req.result.sort((a, b) => (a.order < b.order ? -1 : 1)))
          req.onerror = () => reject(req.error)
        }
      }),
  )
}

/** CI is set (CI=true in .ci/run; "false" and "0" mean not). */
const inCI = () => Boolean(process.env.CI) && !['false', '0'].includes(process.env.CI)

async function pendingCount(page) {
  const el = await page.$('[data-testid="outbox"]')
  return el ? Number(await el.getAttribute('data-pending')) : 0
}

describe('editing together', { concurrency: false }, () => {
  test('offline: 20 edits, a reload while offline, back online: each edit committed once, in order per element', { timeout: 120000 }, async () => {
    const room = newRoom('offline-outbox')
    const api = roomApi(server.url, room)
    for (let i = 1; i <= 4; i++) await api.put(`character-000${i}`, 'character', { name: `Hero ${i}`, description: `seed ${i}` })
    const ctxA = await newContext('alice')
    const ctxB = await newContext('bob')
    let a = await openPage(ctxA, server.url, room)
    const b = await openPage(ctxB, server.url, room)
    await waitForSameState(a, api)
    // The app shell is cached (service worker) before the network goes.
    await a.evaluate(() => navigator.serviceWorker.ready)
    await waitFor(() => a.evaluate(async () => !!(await caches.match('/'))), { what: 'the cached app shell' })

    await ctxA.setOffline(true)
    await waitForStatus(a, 'offline')
    let edits = 0
    // Three creates through the form.
    for (const n of ['Lantern', 'Rope', 'Map']) {
      await a.getByTestId('create-kind').fill('item')
      await a.getByTestId('create-name').fill(`Offline ${n}`)
      await a.getByTestId('create-submit').click()
      edits++
    }
    await waitFor(async () => (await a.locator('[data-kind="item"]').count()) === 3, { what: 'three created cards' })
    const itemIds = await a.$$eval('[data-testid="element"][data-kind="item"]', (cs) => cs.map((c) => c.dataset.id))
    // Four renames of one card (their order matters), descriptions, fields.
    for (const v of ['Hero 1a', 'Hero 1b', 'Hero 1c', 'Hero 1 final']) {
      await commitField(a, 'character-0001', 'name', v)
      edits++
    }
    for (const v of ['two: a', 'two: b', 'two: final']) {
      await commitField(a, 'character-0002', 'description', v)
      edits++
    }
    await commitField(a, 'character-0003', 'name', 'Hero 3 renamed')
    edits++
    await commitField(a, 'character-0002', 'name', 'Hero 2 offline')
    edits++
    for (const [i, id] of itemIds.entries()) {
      await commitField(a, id, 'description', `made offline ${i}`)
      edits++
    }
    await commitField(a, itemIds[0], 'name', 'Offline Lantern (brass)')
    edits++
    // A field of another type, added and then changed.
    await card(a, 'character-0003').getByTestId('add-field').click()
    await card(a, 'character-0003').getByTestId('new-field-key').fill('hp')
    await card(a, 'character-0003').getByTestId('new-field-type').selectOption('number')
    await card(a, 'character-0003').getByTestId('new-field-value').fill('10')
    await card(a, 'character-0003').getByTestId('new-field-submit').click()
    edits++
    await commitOther(a, 'character-0003', 'hp', '12')
    edits++
    await commitField(a, itemIds[1], 'name', 'Offline Rope (long)')
    edits++
    // And a delete.
    await card(a, 'character-0004').getByTestId('delete').click()
    await card(a, 'character-0004').getByTestId('delete-confirm').click()
    edits++
    assert.equal(edits, 20)
    await waitFor(async () => (await pendingCount(a)) === 20, { what: '20 pending changes' })
    assert.equal(await a.getByTestId('blocked').textContent(), 'You are offline.')
    const entries = await storedEntries(a)
    assert.equal(entries.length, 20)
    assert.equal(await card(a, 'character-0001').getByTestId('unsaved').count(), 1)
    await a.screenshot({ path: path.join(ARTIFACTS, 'offline-pending.png') })

    // Reloaded while still offline: the shell comes from the cache, the edits from IndexedDB.
    await a.reload()
    await waitForStatus(a, 'offline')
    await waitFor(async () => (await pendingCount(a)) === 20, { what: '20 pending changes after the reload' })
    assert.equal(await card(a, 'character-0001').getByTestId('name').inputValue(), 'Hero 1 final')
    assert.equal(await card(a, 'character-0004').count(), 0)
    assert.equal((await api.snapshot()).cursor, '4', 'nothing reached the server while offline')

    const t0 = Date.now()
    await ctxA.setOffline(false)
    await waitFor(async () => (await pendingCount(a)) === 0, { timeoutMs: 20000, what: 'the outbox to empty' })
    await waitForStatus(a, 'live', 15000)
    await waitForSameState(a, api)
    await waitForSameState(b, api)
    console.log(`# 20 offline edits saved ${Date.now() - t0} ms after going online`)

    // Each edit committed exactly once, in the order it was made per element.
    const history = (await feedHistory(server.url, room)).filter((e) => e.seq > 4)
    assert.equal(history.length, 20, history.map((e) => `${e.seq} ${e.type} ${e.element?.id}`).join('\n'))
    const keys = entries.map((e) => e.key)
    assert.deepEqual(
      history.map((e) => e.op_id),
      keys,
      'the events carry the idempotency keys in the outbox order',
    )
    assert.equal(new Set(history.map((e) => e.op_id)).size, 20)
    const renames = history.filter((e) => e.element.id === 'character-0001').map((e) => e.element.data.name)
    assert.deepEqual(renames, ['Hero 1a', 'Hero 1b', 'Hero 1c', 'Hero 1 final'])
    const snap = await api.snapshot()
    const byId = Object.fromEntries(snap.elements.map((e) => [e.id, e]))
    assert.equal(byId['character-0002'].data.description, 'two: final')
    assert.equal(byId['character-0003'].data.hp, 12)
    assert.equal(byId[itemIds[0]].data.name, 'Offline Lantern (brass)')
    assert.equal(byId['character-0004'], undefined)
    assert.equal(snap.elements.length, 6)
    await ctxA.close()
    await ctxB.close()
  })

  test('two tabs of one browser share the outbox offline: every edit is sent once', { timeout: 90000 }, async () => {
    const room = newRoom('two-tabs')
    const api = roomApi(server.url, room)
    await api.put('place-0001', 'place', { name: 'Quay' })
    await api.put('place-0002', 'place', { name: 'Mill' })
    const ctx = await newContext('carol')
    const t1 = await openPage(ctx, server.url, room)
    const t2 = await openPage(ctx, server.url, room)
    await ctx.setOffline(true)
    await waitForStatus(t1, 'offline')
    await waitForStatus(t2, 'offline')
    for (let i = 0; i < 4; i++) {
      await commitField(t1, 'place-0001', 'description', `tab one ${i}`)
      await commitField(t2, 'place-0002', 'description', `tab two ${i}`)
    }
    // Each tab shows the shared outbox: eight changes.
    await waitFor(async () => (await pendingCount(t1)) === 8 && (await pendingCount(t2)) === 8, { what: 'both tabs see 8 pending' })
    const writes = []
    for (const p of [t1, t2]) p.on('request', (r) => r.method() === 'PATCH' && writes.push(r.headers()['idempotency-key']))
    await ctx.setOffline(false)
    await waitFor(async () => (await pendingCount(t1)) === 0 && (await pendingCount(t2)) === 0, { timeoutMs: 20000, what: 'outbox empty in both tabs' })
    await waitForSameState(t1, api)
    await waitForSameState(t2, api)
    const history = (await feedHistory(server.url, room)).filter((e) => e.seq > 2)
    assert.equal(history.length, 8)
    assert.equal(new Set(history.map((e) => e.op_id)).size, 8)
    assert.equal(writes.length, 8, `each entry sent once (Web Locks): ${writes.length} PATCH requests`)
    const snap = await api.snapshot()
    assert.deepEqual(snap.elements.map((e) => e.data.description), ['tab one 3', 'tab two 3'])
    await ctx.close()
  })

  test('a database outage while editing: writes answered 503 are retried and land once', { timeout: 120000 }, async (t) => {
    const dbName = `roomfeed_e2e_${process.pid}_${Date.now()}`
    try {
      await psql(`CREATE DATABASE ${dbName}`)
    } catch (err) {
      const why = `PostgreSQL at 127.0.0.1:5432 is not available: ${err.message.split('\n')[0]}`
      // CI starts PostgreSQL (.ci/run, scripts/test-services.sh): there a
      // missing database is a failure, not a reason to skip the outage.
      if (inCI()) throw new Error(`${why} (CI is set: this test must run)`, { cause: err })
      t.skip(why)
      return
    }
    const proxy = await tcpProxy(5432)
    const own = await tempDir('roomfeed-e2e-outage-')
    let srv
    try {
      srv = await startServer({
        bin,
        databaseUrl: `postgres://postgres@127.0.0.1:${proxy.port}/${dbName}?sslmode=disable`,
        args: ['--db-timeout', '1s'],
      })
      const room = newRoom('outage')
      const api = roomApi(srv.url, room)
      await api.put('item-0001', 'item', { name: 'Anvil' })
      await api.put('item-0002', 'item', { name: 'Bellows' })
      const ctx = await newContext('dora')
      const page = await openPage(ctx, srv.url, room)
      await waitForSameState(page, api)
      const statuses = []
      page.on('response', (r) => ['PATCH', 'PUT', 'DELETE'].includes(r.request().method()) && statuses.push(r.status()))

      await proxy.stop() // the database is gone
      await commitField(page, 'item-0001', 'description', 'forged during the outage')
      await commitField(page, 'item-0002', 'name', 'Great Bellows')
      await commitField(page, 'item-0001', 'name', 'Anvil of the outage')
      await waitFor(() => statuses.includes(503), { timeoutMs: 15000, what: 'a write answered 503' })
      await waitFor(async () => (await page.getAttribute('[data-testid="outbox"]', 'data-blocked')) === 'unavailable', {
        what: 'the outbox to say the server is unavailable',
      })
      assert.equal(await pendingCount(page), 3)
      await page.screenshot({ path: path.join(ARTIFACTS, 'outage-blocked.png') })
      const keys = (await storedEntries(page)).map((e) => e.key)

      await proxy.start() // back
      await waitFor(async () => (await pendingCount(page)) === 0, { timeoutMs: 30000, what: 'the outbox to empty' })
      await waitForSameState(page, api, { timeoutMs: 20000 })
      const history = (await feedHistory(srv.url, room)).filter((e) => e.seq > 2)
      assert.deepEqual(history.map((e) => e.op_id), keys, 'each write committed once, in order')
      const snap = await api.snapshot()
      assert.deepEqual(snap.elements.map((e) => e.data), [
        { name: 'Anvil of the outage', description: 'forged during the outage' },
        { name: 'Great Bellows' },
      ])
      console.log(`# write answers during the outage: ${statuses.join(' ')}`)
      await ctx.close()
    } finally {
      await srv?.stop()
      await proxy.stop().catch(() => {})
      await own.cleanup()
      await psql(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((err) => console.log(`# drop database: ${err.message}`))
    }
  })

  test('a server restart while editing: the process is killed, edits made meanwhile land once after it is back', { timeout: 120000 }, async () => {
    const own = await tempDir('roomfeed-e2e-restart-')
    const db = path.join(own.dir, 'restart.db')
    let srv = await startServer({ bin, db })
    try {
      const room = newRoom('restart')
      const api = roomApi(srv.url, room)
      await api.put('item-0001', 'item', { name: 'Anvil' })
      await api.put('item-0002', 'item', { name: 'Bellows' })
      const ctx = await newContext('erin')
      const page = await openPage(ctx, srv.url, room)
      await waitForSameState(page, api)

      srv.proc.kill('SIGKILL') // the server dies; the browser stays online
      await srv.exited
      await commitField(page, 'item-0001', 'description', 'forged while the server was down')
      await commitField(page, 'item-0002', 'name', 'Great Bellows')
      await commitField(page, 'item-0001', 'name', 'Anvil of the restart')
      await waitFor(async () => (await pendingCount(page)) === 3, { what: 'three edits pending' })
      const keys = (await storedEntries(page)).map((e) => e.key)
      assert.equal(keys.length, 3)

      srv = await startServer({ bin, db, port: srv.port }) // back, same address and database
      // A generous bound: the outbox retries with backoff (up to 15 s between
      // tries), or as soon as the feed is live again.
      await waitFor(async () => (await pendingCount(page)) === 0, { timeoutMs: 40000, what: 'the outbox to empty after the restart' })
      await waitForSameState(page, api, { timeoutMs: 20000 })
      const history = (await feedHistory(srv.url, room)).filter((e) => e.seq > 2)
      assert.deepEqual(history.map((e) => e.op_id), keys, 'each edit committed once, in order')
      const snap = await api.snapshot()
      assert.deepEqual(snap.elements.map((e) => e.data), [
        { name: 'Anvil of the restart', description: 'forged while the server was down' },
        { name: 'Great Bellows' },
      ])
      await ctx.close()
    } finally {
      await srv.stop()
      await own.cleanup()
    }
  })

  test('conflict: both edit one field from one version; B keeps its text and resolves both ways; different fields merge silently', { timeout: 90000 }, async () => {
    const room = newRoom('conflict')
    const api = roomApi(server.url, room)
    await api.put('character-0001', 'character', { name: 'Aria', description: 'scout' })
    const ctxA = await newContext('alice')
    const ctxB = await newContext('bob')
    const a = await openPage(ctxA, server.url, room)
    const b = await openPage(ctxB, server.url, room)
    await waitForSameState(a, api)
    await waitForSameState(b, api)

    async function race(field, mineA, mineB) {
      const inA = card(a, 'character-0001').getByTestId(field)
      const inB = card(b, 'character-0001').getByTestId(field)
      const version = await card(a, 'character-0001').getAttribute('data-version')
      await inA.click()
      await inB.click()
      await inA.fill(mineA)
      await inB.fill(mineB)
      await inA.press('Enter')
      await waitFor(async () => (await card(b, 'character-0001').getAttribute('data-version')) === String(Number(version) + 1), {
        what: 'B to receive A\'s change',
      })
      assert.equal(await inB.inputValue(), mineB, 'B\'s draft is kept while A\'s change arrives')
      const [res] = await Promise.all([b.waitForResponse((r) => r.request().method() === 'PATCH'), inB.press('Enter')])
      assert.equal(res.request().headers()['if-match'], `"${version}"`, 'sent with the version it started from')
      assert.ok([409, 412].includes(res.status()), `answered ${res.status()}`)
      const conflict = card(b, 'character-0001').getByTestId('conflict')
      await conflict.waitFor({ timeout: 5000 })
      assert.equal(await conflict.getByTestId('theirs').textContent(), mineA)
      assert.equal(await conflict.getByTestId('mine').textContent(), mineB)
      assert.equal(await inB.inputValue(), mineA, 'the card shows theirs meanwhile')
      return conflict
    }

    // Keep mine: B's text wins, sent on the current version.
    let conflict = await race('name', 'Aria from A', 'Aria from B')
    await b.screenshot({ path: path.join(ARTIFACTS, 'conflict.png') })
    await conflict.getByTestId('keep-mine').click()
    await waitFor(async () => (await api.snapshot()).elements[0].data.name === 'Aria from B', { what: 'B\'s name saved' })
    await waitForSameState(a, api)
    await waitForSameState(b, api)
    assert.equal(await card(b, 'character-0001').getByTestId('conflict').count(), 0)

    // Take theirs: A's text stays, B sends nothing for it.
    conflict = await race('description', 'scout of the north', 'scout of the south')
    const before = (await api.snapshot()).cursor
    await conflict.getByTestId('take-theirs').click()
    await waitFor(async () => (await card(b, 'character-0001').getByTestId('conflict').count()) === 0, { what: 'conflict resolved' })
    await new Promise((r) => setTimeout(r, 300))
    assert.equal((await api.snapshot()).cursor, before, 'take theirs writes nothing')
    assert.equal((await api.snapshot()).elements[0].data.description, 'scout of the north')
    await waitForSameState(b, api)

    // Different fields of one card from one version: merged, no prompt.
    const v = await card(a, 'character-0001').getAttribute('data-version')
    const nameA = card(a, 'character-0001').getByTestId('name')
    const descB = card(b, 'character-0001').getByTestId('description')
    await nameA.click()
    await descB.click()
    await nameA.fill('Aria, merged')
    await descB.fill('a merged description')
    await nameA.press('Enter')
    await waitFor(async () => (await card(b, 'character-0001').getAttribute('data-version')) === String(Number(v) + 1), { what: 'B sees A\'s rename' })
    const [res] = await Promise.all([b.waitForResponse((r) => r.request().method() === 'PATCH'), descB.press('Enter')])
    assert.equal(res.request().headers()['if-match'], `"${v}"`)
    assert.equal(res.status(), 200, 'merged by the server')
    assert.ok(res.headers()['merged-from'], 'Merged-From names the base')
    await waitForSameState(a, api)
    await waitForSameState(b, api)
    const el = (await api.snapshot()).elements[0]
    assert.deepEqual(el.data, { name: 'Aria, merged', description: 'a merged description' })
    assert.equal(await b.getByTestId('conflict').count(), 0)
    assert.equal(await a.getByTestId('conflict').count(), 0)
    assert.equal(await b.getByTestId('error').count(), 0)
    await ctxA.close()
    await ctxB.close()
  })

  test('preview: B sees A typing within 300 ms, marked with A\'s name; the mark goes on commit', { timeout: 60000 }, async () => {
    const room = newRoom('preview')
    const api = roomApi(server.url, room)
    await api.put('place-0001', 'place', { name: 'Harbor', description: 'Fog and gulls.' })
    const ctxA = await newContext('alice')
    const ctxB = await newContext('bob')
    const a = await openPage(ctxA, server.url, room)
    const b = await openPage(ctxB, server.url, room)
    await waitFor(async () => (await b.locator('[data-testid="person"]').count()) === 2, { what: 'both present' })
    const descA = card(a, 'place-0001').getByTestId('description')
    // In-page clocks (one browser, one wall clock): when A's field took each
    // text, and when B's field first showed it.
    await a.evaluate(() => {
      window.__typed = []
      document.querySelector('[data-id="place-0001"] [data-testid="description"]').addEventListener('input', (e) => window.__typed.push([e.target.value, Date.now()]))
    })
    await b.evaluate(() => {
      window.__seen = []
      const tick = () => {
        const v = document.querySelector('[data-id="place-0001"] [data-testid="description"]')?.value
        if (v !== window.__seen.at(-1)?.[0]) window.__seen.push([v, Date.now()])
        requestAnimationFrame(tick)
      }
      tick()
    })
    await descA.click()
    await descA.press('End')
    await descA.pressSequentially(' Bells at dusk.', { delay: 70 }) // a brisk typist, about 14 keys a second
    const want = 'Fog and gulls. Bells at dusk.'
    await b.waitForFunction(
      (w) => document.querySelector('[data-id="place-0001"] [data-testid="description"]')?.value === w,
      want,
      { timeout: 3000, polling: 20 },
    )
    // B's recorder runs once a frame: let it note the final text too (the
    // poll above can see it first).
    await b.waitForFunction((w) => window.__seen.at(-1)?.[0] === w, want, { timeout: 3000 })
    const typed = await a.evaluate(() => window.__typed)
    const seen = await b.evaluate(() => window.__seen)
    // For each text A had, how long until B showed it or a later one.
    const order = new Map(typed.map(([v], i) => [v, i]))
    const lags = typed.map(([, at], i) => {
      const shown = seen.find(([v]) => (order.get(v) ?? -1) >= i)
      return shown ? shown[1] - at : Infinity
    })
    const sorted = [...lags].sort((x, y) => x - y)
    const median = sorted[Math.floor(sorted.length / 2)]
    console.log(`# preview lag in B over ${lags.length} keystrokes: median ${median} ms, max ${sorted.at(-1)} ms (${lags.join(' ')})`)
    const mark = card(b, 'place-0001').getByTestId('draft-mark')
    assert.equal(await mark.getAttribute('data-person'), 'alice')
    assert.match(await mark.textContent(), /alice is editing/)
    await b.screenshot({ path: path.join(ARTIFACTS, 'preview.png') })
    // By design a keystroke is sent at once or at most 200 ms later, then
    // crosses the server: the typical keystroke is seen well within 300 ms.
    // A loaded machine (2 shared cores) stalls the odd one, so the bound is
    // on the median, and no keystroke may take a second.
    assert.ok(median <= 300, `median lag ${median} ms`)
    assert.ok(sorted.at(-1) < 1000, `slowest keystroke seen after ${sorted.at(-1)} ms`)

    await descA.press('Enter') // commit
    await waitFor(async () => (await card(b, 'place-0001').getByTestId('draft-mark').count()) === 0, { timeoutMs: 2000, what: 'the mark to go' })
    assert.equal(await card(b, 'place-0001').getByTestId('description').inputValue(), 'Fog and gulls. Bells at dusk.')
    await waitForSameState(b, api)
    // Drafts never enter the history.
    const history = await feedHistory(server.url, room)
    assert.deepEqual(history.map((e) => e.type), ['element.created', 'element.updated'])

    // Typing then leaving the page: the mark goes when A leaves.
    await card(a, 'place-0001').getByTestId('name').click()
    await card(a, 'place-0001').getByTestId('name').pressSequentially(' Town')
    await card(b, 'place-0001').getByTestId('draft-mark').waitFor({ timeout: 2000 })
    await ctxA.close()
    await waitFor(async () => (await card(b, 'place-0001').getByTestId('draft-mark').count()) === 0, { timeoutMs: 5000, what: 'the mark to go when A leaves' })
    assert.equal(await card(b, 'place-0001').getByTestId('name').inputValue(), 'Harbor')
    await ctxB.close()
  })

  test('every data type of the element editor round-trips through the API', { timeout: 60000 }, async () => {
    const room = newRoom('types')
    const api = roomApi(server.url, room)
    await api.put('character-0001', 'character', {
      name: 'Sir Brannoc',
      description: 'Old knight.',
      title: 'Sir',
      hp: 12,
      ratio: 0.5,
      alive: true,
      stats: { str: 3, dex: 4 },
      tags: ['brave', 'old'],
      nothing: null,
    })
    const ctx = await newContext('erin')
    const page = await openPage(ctx, server.url, room)
    const c = card(page, 'character-0001')
    await c.waitFor()
    const typeOf = (f) => c.locator(`[data-field="${f}"] .field-editor`).getAttribute('class')
    assert.match(await typeOf('hp'), /type-number/)
    assert.match(await typeOf('alive'), /type-boolean/)
    assert.match(await typeOf('stats'), /type-json/)
    assert.match(await typeOf('tags'), /type-json/)
    assert.match(await typeOf('nothing'), /type-json/)
    assert.match(await typeOf('title'), /type-string/)

    let version = 1
    const saved = async () => {
      version += 1
      await waitFor(async () => (await c.getAttribute('data-version')) === String(version) && (await pendingCount(page)) === 0, {
        what: `version ${version} saved`,
      })
    }
    await commitOther(page, 'character-0001', 'hp', '15')
    await saved()
    await commitOther(page, 'character-0001', 'ratio', '0.75')
    await saved()
    await c.locator('[data-field="alive"] input[type="checkbox"]').uncheck()
    await saved()
    await commitOther(page, 'character-0001', 'stats', '{"str": 5, "wis": 1}')
    await saved()
    await commitOther(page, 'character-0001', 'tags', '["brave"]')
    await saved()
    await commitOther(page, 'character-0001', 'title', 'Lord')
    await saved()
    for (const [key, type, value] of [
      ['level', 'number', '3'],
      ['flag', 'boolean', 'true'],
      ['inventory', 'json', '[{"item": "rope", "n": 2}]'],
      ['motto', 'text', 'Onward'],
    ]) {
      await c.getByTestId('add-field').click()
      await c.getByTestId('new-field-key').fill(key)
      await c.getByTestId('new-field-type').selectOption(type)
      if (type === 'boolean') await c.getByTestId('new-field-value').selectOption(value)
      else await c.getByTestId('new-field-value').fill(value)
      await c.getByTestId('new-field-submit').click()
      await saved()
    }
    await c.locator('[data-field="nothing"]').hover() // the ✕ shows on hover (always on phones)
    await c.locator('[data-field="nothing"] [data-testid="field-remove"]').click()
    await saved()
    // A null inside an object: sent whole (PUT).
    await commitOther(page, 'character-0001', 'stats', '{"str": 5, "wis": null}')
    await saved()
    await c.getByTestId('kind').fill('hero')
    await c.getByTestId('kind').press('Enter')
    await saved()

    const [el] = (await api.snapshot()).elements
    assert.equal(el.kind, 'hero')
    assert.deepEqual(el.data, {
      name: 'Sir Brannoc',
      description: 'Old knight.',
      title: 'Lord',
      hp: 15,
      ratio: 0.75,
      alive: false,
      stats: { str: 5, wis: null },
      tags: ['brave'],
      level: 3,
      flag: true,
      inventory: [{ item: 'rope', n: 2 }],
      motto: 'Onward',
    })
    // And what the API holds is what a fresh page shows.
    const again = await openPage(ctx, server.url, room)
    const c2 = card(again, 'character-0001')
    await c2.waitFor()
    assert.equal(await c2.locator('[data-field="hp"] input').inputValue(), '15')
    assert.equal(await c2.locator('[data-field="alive"] input').isChecked(), false)
    assert.deepEqual(JSON.parse(await c2.locator('[data-field="inventory"] textarea').inputValue()), [{ item: 'rope', n: 2 }])
    assert.equal(await c2.getAttribute('data-kind'), 'hero')
    await again.screenshot({ path: path.join(ARTIFACTS, 'element-editor.png') })
    await ctx.close()
  })

  /** The page says, in words, why its feed was refused (kind, text), and its status is error. */
  async function assertRefused(page, kind, text) {
    const problem = page.getByTestId('problem')
    await problem.waitFor({ timeout: 15000 })
    assert.equal(await problem.getAttribute('data-kind'), kind)
    assert.match(await problem.textContent(), text)
    assert.equal(await statusOf(page), 'error')
  }

  test('a feed the server refuses says so in words instead of "connecting" forever', { timeout: 60000 }, async () => {
    const own = await tempDir('roomfeed-e2e-auth-')
    const srv = await startServer({ bin, db: path.join(own.dir, 'auth.db'), env: { ROOMFEED_JWT_SECRET: 'e2e-secret-that-is-long-enough-0123456789' } })
    try {
      const ctx = await newContext('frank')
      const page = await openPage(ctx, srv.url, 'locked', { status: 'error' })
      await assertRefused(page, 'auth', /sign-in has expired or is missing/)
      await page.screenshot({ path: path.join(ARTIFACTS, 'refused-feed.png') })
      await ctx.close()
    } finally {
      await srv.stop()
      await own.cleanup()
    }
  })

  test('a feed refused with 403 (a token without the room\'s read grant) says forbidden, not "connecting"', { timeout: 60000 }, async () => {
    const own = await tempDir('roomfeed-e2e-forbidden-')
    const secret = 'e2e-secret-that-is-long-enough-0123456789'
    const env = { ROOMFEED_JWT_SECRET: secret, ROOMFEED_WEB_TOKEN_ENDPOINT: '/e2e/token' }
    const srv = await startServer({ bin, db: path.join(own.dir, 'forbidden.db'), env })
    try {
      // A valid token of frank's, for other rooms only: the feed of "locked" is 403.
      const { stdout } = await promisify(execFile)(bin, ['token', '--sub', 'frank', '--read', 'other-*', '--write', 'other-*'], {
        env: { ...process.env, ROOMFEED_JWT_SECRET: secret },
      })
      const token = stdout.trim()
      const probe = await fetch(`${srv.url}/events?room=locked&access_token=${encodeURIComponent(token)}`)
      assert.equal(probe.status, 403, 'the server refuses the feed with 403')
      await probe.body?.cancel()
      const ctx = await newContext('frank')
      // The token endpoint the editor is configured with (GET /config.json).
      await ctx.route('**/e2e/token', (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify({ token }) }))
      const page = await openPage(ctx, srv.url, 'locked', { status: 'error' })
      await assertRefused(page, 'forbidden', /You do not have access to this world\./)
      await page.screenshot({ path: path.join(ARTIFACTS, 'forbidden-feed.png') })
      await ctx.close()
    } finally {
      await srv.stop()
      await own.cleanup()
    }
  })

  // A roomfeed server answers 404 on a feed only for a route it does not
  // have, and only where it serves no web app (with one, such a path is the
  // editor's route fallback, 200 text/html). So: the editor's node points it
  // (GET /config.json) at an API-only node with a wrong path prefix, as a
  // misconfigured proxy would; that node answers /not-roomfeed/events 404.
  test('a feed answered 404 (a server URL that is not a roomfeed API) says not found, not "connecting"', { timeout: 60000 }, async () => {
    const own = await tempDir('roomfeed-e2e-notfound-')
    const [apiPort, webPort] = await freePorts(2)
    const wrong = `http://127.0.0.1:${apiPort}/not-roomfeed`
    const web = await startServer({ bin, db: path.join(own.dir, 'web.db'), port: webPort, env: { ROOMFEED_WEB_SERVER_URL: wrong } })
    let apiNode
    try {
      apiNode = await startServer({
        bin,
        db: path.join(own.dir, 'api.db'),
        port: apiPort,
        args: ['--web-dir', own.dir], // no index.html: an API-only node
        env: { ROOMFEED_CORS_ORIGINS: web.url },
      })
      const probe = await fetch(`${wrong}/events?room=lost`, { headers: { Origin: web.url } })
      assert.equal(probe.status, 404, 'the API node answers 404 for the feed at the wrong URL')
      const ctx = await newContext('gina')
      const page = await openPage(ctx, web.url, 'lost', { status: 'error' })
      await assertRefused(page, 'not_found', /Not found on the server\./)
      await ctx.close()
    } finally {
      await apiNode?.stop()
      await web.stop()
      await own.cleanup()
    }
  })
})

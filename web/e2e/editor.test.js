// End-to-end tests: the built editor in headless Chromium against the real
// roomfeed server (SQLite, embedded fan-out), started by the test.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import path from 'node:path'
import {
  WEB_DIR,
  buildServer,
  launchBrowser,
  pageState,
  roomApi,
  serverState,
  startServer,
  tempDir,
  waitFor,
  waitForSameState,
  waitForStatus,
} from './harness.js'

const ARTIFACTS = path.join(WEB_DIR, 'e2e', 'artifacts')
const DOCS = path.join(WEB_DIR, 'docs')

let tmp, bin, server, browser
let roomNo = 0
const newRoom = (name) => (roomNo++ ? `${name}-${roomNo}` : name) // the database is fresh per run

before(async () => {
  tmp = await tempDir()
  bin = await buildServer(tmp.dir)
  server = await startServer({ bin, db: path.join(tmp.dir, 'shared.db') })
  browser = await launchBrowser()
  await mkdir(ARTIFACTS, { recursive: true })
}, { timeout: 300000 }) // building the server may download Go modules

after(async () => {
  await browser?.close()
  await server?.stop()
  await tmp?.cleanup()
})

async function openEditor(base, room, context) {
  const ctx = context ?? (await browser.newContext({ viewport: { width: 900, height: 760 } }))
  const page = await ctx.newPage()
  page.on('pageerror', (err) => console.log(`# page error: ${err.message}`))
  await page.goto(`${base}/?room=${encodeURIComponent(room)}`)
  await waitForStatus(page, 'live')
  return { page, context: ctx }
}

function card(page, id) {
  return page.locator(`[data-testid="element"][data-id="${id}"]`)
}

async function sideBySide(pages, file) {
  const shots = await Promise.all(pages.map((p) => p.screenshot()))
  const ctx = await browser.newContext({ viewport: { width: 1820, height: 800 } })
  const page = await ctx.newPage()
  const imgs = shots
    .map((b) => `<img src="data:image/png;base64,${b.toString('base64')}">`)
    .join('')
  await page.setContent(
    `<body style="margin:0;padding:10px;background:#2b2f3a;display:flex;gap:20px">${imgs}</body>` +
      `<style>img{width:890px;border-radius:8px;box-shadow:0 4px 18px #0008}</style>`,
  )
  await page.screenshot({ path: file, fullPage: true })
  await ctx.close()
}

describe('world editor', { concurrency: false }, () => {
  test('two windows on one room: an edit in one shows in the other within a second', { timeout: 60000 }, async () => {
    const room = newRoom('saltmarsh')
    const api = roomApi(server.url, room)
    await api.put('character-0001', 'character', {
      name: 'Aria',
      description: 'A cartographer with a stolen map.',
      hp: 12,
      curious: true,
      traits: ['patient', 'left-handed'],
    })
    await api.put('character-0002', 'character', { name: 'Brother Wend', description: 'Keeps the harbor chapel, and its secrets.' })
    await api.put('place-0001', 'place', { name: 'Saltmarsh Harbor', description: 'Fog, gulls and smugglers.' })
    await api.put('place-0002', 'place', { name: 'The Drowned Lighthouse', description: 'Half sunk at high tide.' })
    await api.put('item-0001', 'item', { name: 'Brass Lantern' })
    await api.put('item-0002', 'item', { name: 'Sealed Letter', description: 'Addressed to nobody.' })

    const a = await openEditor(server.url, room)
    const b = await openEditor(server.url, room)
    await waitForSameState(a.page, api)
    await waitForSameState(b.page, api)

    // Rename in A; B must show it within one second.
    const nameA = card(a.page, 'character-0001').getByTestId('name')
    await nameA.fill('Aria Vell')
    const t0 = Date.now()
    await nameA.press('Enter')
    await b.page.waitForFunction(
      () => document.querySelector('[data-id="character-0001"] [data-testid="name"]')?.value === 'Aria Vell',
      null,
      { timeout: 1000, polling: 10 },
    )
    const renameMs = Date.now() - t0

    // Describe in B; A sees it.
    const descB = card(b.page, 'place-0001').getByTestId('description')
    await descB.fill('Fog, gulls, smugglers, and a lighthouse that is never lit.')
    await descB.press('Enter')
    await a.page.waitForFunction(
      () => document.querySelector('[data-id="place-0001"] [data-testid="description"]')?.value.includes('lighthouse'),
      null,
      { timeout: 1000, polling: 10 },
    )

    // Create in A through the form; B sees it. Delete it in B; A loses it.
    await a.page.getByTestId('create-kind').fill('item')
    await a.page.getByTestId('create-name').fill('Tide Chart')
    const t1 = Date.now()
    await a.page.getByTestId('create-submit').click()
    await b.page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid="name"]')].some((i) => i.value === 'Tide Chart'),
      null,
      { timeout: 1000, polling: 10 },
    )
    const createMs = Date.now() - t1
    await card(b.page, 'item-0001').getByTestId('delete').click()
    const [del] = await Promise.all([
      b.page.waitForRequest((r) => r.method() === 'DELETE'),
      card(b.page, 'item-0001').getByTestId('delete-confirm').click(),
    ])
    assert.equal(del.headers()['if-match'], '"1"', 'a delete is sent with the version shown')
    await waitFor(async () => (await card(a.page, 'item-0001').count()) === 0, { timeoutMs: 1000, what: 'delete in A' })

    await waitForSameState(a.page, api)
    await waitForSameState(b.page, api)
    console.log(`# rename visible in other window after ${renameMs} ms, create after ${createMs} ms`)

    await card(a.page, 'character-0001').getByTestId('description').fill('A cartographer with a stolen map of the tides.')
    await card(a.page, 'character-0001').getByTestId('description').press('Enter')
    await waitForSameState(b.page, api)
    await waitForSameState(a.page, api)
    await a.page.mouse.move(0, 0)
    await b.page.mouse.move(0, 0)
    // For the picture: A is typing (not committed), which B previews.
    const typing = card(a.page, 'place-0002').getByTestId('description')
    await typing.click()
    await typing.press('End')
    await typing.pressSequentially(' The keeper left in a hurry')
    await card(b.page, 'place-0002').getByTestId('draft-mark').waitFor({ timeout: 2000 }).catch(() => {})
    await sideBySide([a.page, b.page], path.join(ARTIFACTS, 'two-windows.png'))
    // The phone-sized page: a third window at 390×844.
    const phone = await openEditor(server.url, room, await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }))
    await waitForSameState(phone.page, api)
    await phone.page.screenshot({ path: path.join(ARTIFACTS, 'phone.png') })
    // The README's pictures: written when missing or with UPDATE_SCREENSHOT=1.
    const docShot = path.join(DOCS, 'screenshot.png')
    const phoneShot = path.join(DOCS, 'screenshot-phone.png')
    if (process.env.UPDATE_SCREENSHOT || !existsSync(docShot) || !existsSync(phoneShot)) {
      await mkdir(DOCS, { recursive: true })
      await sideBySide([a.page, b.page], docShot)
      await phone.page.screenshot({ path: phoneShot })
    }
    // No horizontal scrolling on a phone.
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    assert.ok(overflow <= 0, `the phone page scrolls sideways by ${overflow} px`)
    await typing.press('Escape')
    await phone.context.close()
    await a.context.close()
    await b.context.close()
  })

  test('server stopped and restarted: page shows reconnecting, then live, and ends at the server state', { timeout: 90000 }, async () => {
    const own = await tempDir('roomfeed-e2e-restart-')
    const db = path.join(own.dir, 'rf.db')
    let srv = await startServer({ bin, db })
    const room = newRoom('restart')
    const api = roomApi(srv.url, room)
    try {
      for (let i = 0; i < 5; i++) await api.put(`character-${i}`, 'character', { name: `Hero ${i}` })
      const { page, context } = await openEditor(srv.url, room)
      await waitForSameState(page, api)
      const seen = []
      await page.exposeFunction('recordStatus', (s) => seen.push(s))
      await page.evaluate(() => {
        const el = document.querySelector('[data-testid="status"]')
        new MutationObserver(() => window.recordStatus(el.textContent)).observe(el, {
          childList: true,
          characterData: true,
          subtree: true,
        })
      })

      const cursorBefore = await page.getAttribute('[data-room]', 'data-cursor')
      const feedUrls = []
      page.on('request', (r) => {
        if (r.url().includes('/events')) feedUrls.push(new URL(r.url()).searchParams.get('last_event_id'))
      })
      // Until the edits below are made, the page cannot reach the feed even
      // once the server is back (its attempts fail like a refused connection).
      let blockFeed = true
      // (The editor follows its rooms on the multiplexed feed, /events?room=...)
      await page.route('**/events?*', (route) => (blockFeed ? route.abort('connectionrefused') : route.continue()))

      const stopped = await srv.stop()
      assert.equal(stopped.code, 0, `server exit: ${JSON.stringify(stopped)}\n${srv.logs()}`)
      await waitForStatus(page, 'reconnecting', 10000)

      srv = await startServer({ bin, db, port: srv.port })
      // Edits by another client right after the restart, before the page is back.
      await api.patch('character-0', { name: 'Hero 0 (renamed while away)' })
      await api.del('character-1')
      await api.put('place-new', 'place', { name: 'Built while away' })
      assert.equal(await page.textContent('[data-testid="status"]'), 'reconnecting')
      blockFeed = false

      await waitForStatus(page, 'live', 20000)
      // And more edits once it is live again.
      await api.patch('character-2', { description: 'after the reconnect' })
      await api.put('item-new', 'item', { name: 'Found after' })
      await waitForSameState(page, api)

      const iRe = seen.indexOf('reconnecting')
      assert.ok(iRe >= 0 && seen.indexOf('live', iRe) > iRe, `status sequence: ${seen.join(' → ')}`)
      assert.ok(feedUrls.length > 0)
      assert.equal(feedUrls[0], `${room}:${cursorBefore}`, 'the first reopen carries the cursor held before the stop')
      console.log(`# status after stop: ${seen.join(' → ')}; reopened with last_event_id ${feedUrls.join(', ')}`)
      await context.close()
    } finally {
      await srv.stop()
      await own.cleanup()
    }
  })

  test('offline while 200 changes are made: catches up to exactly the server state', { timeout: 90000 }, async () => {
    const room = newRoom('offline')
    const api = roomApi(server.url, room)
    for (let i = 0; i < 10; i++) await api.put(`item-${String(i).padStart(3, '0')}`, 'item', { name: `Item ${i}` })
    const { page, context } = await openEditor(server.url, room)
    await waitForSameState(page, api)

    await context.setOffline(true)
    await waitForStatus(page, 'offline', 5000)

    // 200 changes: creates, renames, description edits and deletes.
    let n = 0
    for (let i = 0; i < 60; i++, n++) await api.put(`character-${String(i).padStart(3, '0')}`, 'character', { name: `C${i}` })
    for (let i = 0; i < 100; i++, n++)
      await api.patch(`character-${String(i % 60).padStart(3, '0')}`, { name: `C${i % 60} v${i}`, description: `edit ${i}` })
    for (let i = 0; i < 30; i++, n++) await api.del(`character-${String(i * 2).padStart(3, '0')}`)
    for (let i = 0; i < 10; i++, n++) await api.patch(`item-${String(i).padStart(3, '0')}`, { description: `offline ${i}` })
    assert.equal(n, 200)
    assert.equal(await page.textContent('[data-testid="status"]'), 'offline')

    const t0 = Date.now()
    await context.setOffline(false)
    await waitForStatus(page, 'live', 15000)
    await waitForSameState(page, api)
    const state = await pageState(page)
    const ids = state.map((e) => e.id)
    assert.equal(new Set(ids).size, ids.length, 'no duplicate cards')
    const truth = await serverState(api)
    assert.deepEqual(state, truth.elements)
    assert.equal(state.length, 10 + 60 - 30)
    console.log(`# caught up with 200 changes in ${Date.now() - t0} ms`)
    await context.close()
  })

  test('the room picker opens a shareable room URL; a second window opened from it sees the same world', { timeout: 60000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 760 } })
    const page = await context.newPage()
    await page.goto(`${server.url}/`)
    await page.getByTestId('room-input').last().fill('harbor-town')
    await page.getByTestId('room-open').last().click()
    await waitForStatus(page, 'live')
    assert.equal(new URL(page.url()).searchParams.get('room'), 'harbor-town')
    await page.getByTestId('empty').waitFor()

    await page.getByTestId('create-kind').fill('place')
    await page.getByTestId('create-name').fill('Old Quay')
    await page.getByTestId('create-submit').click()
    await page.locator('[data-testid="kind-place"] [data-testid="element"]').waitFor()

    const share = await page.getByTestId('share-link').getAttribute('href')
    assert.equal(share, `${server.url}/?room=harbor-town`)
    const other = await openEditor(share.replace(/\/\?room=.*$/, ''), 'harbor-town')
    const api = roomApi(server.url, 'harbor-town')
    await waitForSameState(other.page, api)
    await waitForSameState(page, api)
    const [el] = (await api.snapshot()).elements
    assert.equal(el.kind, 'place')
    assert.equal(el.data.name, 'Old Quay')

    // A custom message (a name the editor does not listen to) followed by a
    // change: the page accepts the unheard seq (the feed has no holes) and stays exact.
    const reopened = []
    page.on('request', (r) => r.url().includes('/events') && reopened.push(r.url()))
    const msg = await fetch(`${server.url}/rooms/harbor-town/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ event: 'chat', data: { text: 'ahoy' } }),
    })
    assert.ok(msg.ok, `POST /messages: ${msg.status}`)
    await api.patch(el.id, { description: 'Where the ferry used to land.' })
    await waitForSameState(page, api)
    await waitForSameState(other.page, api)
    assert.equal(reopened.length, 0, `the multiplexed feed accepts the unheard seq without reopening (${reopened.length})`)

    // Back to the landing page and forward again: the room comes back from the URL.
    await page.goBack()
    await page.getByTestId('room-new').last().waitFor()
    await page.goForward()
    await waitForStatus(page, 'live')
    await waitForSameState(page, api)
    await other.context.close()
    await context.close()
  })
})

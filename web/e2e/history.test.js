// End-to-end tests of history in the editor: restore a version from a card's
// history panel, undo of one's own changes across two windows (Ctrl+Z outside
// text fields, step by step), bring back a deleted element, and the time
// slider's read-only view of an earlier state. Real server (SQLite), headless
// Chromium.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'
import { WEB_DIR, buildServer, launchBrowser, roomApi, startServer, tempDir, waitFor, waitForSameState, waitForStatus } from './harness.js'

const ARTIFACTS = path.join(WEB_DIR, 'e2e', 'artifacts')

let tmp, bin, server, browser
let roomNo = 0
const newRoom = (name) => `${name}-${++roomNo}`

before(async () => {
  tmp = await tempDir('roomfeed-e2e-history-')
  bin = await buildServer(tmp.dir)
  server = await startServer({ bin, db: path.join(tmp.dir, 'history.db') })
  browser = await launchBrowser()
}, { timeout: 300000 })

after(async () => {
  await browser?.close()
  await server?.stop()
  await tmp?.cleanup()
})

async function openPage(room, name) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 900 } })
  await ctx.addInitScript((n) => localStorage.setItem('roomfeed.name', n), name)
  const page = await ctx.newPage()
  page.on('pageerror', (err) => console.log(`# page error: ${err.message}`))
  await page.goto(`${server.url}/?room=${encodeURIComponent(room)}`)
  await waitForStatus(page, 'live', 15000)
  return page
}

const card = (page, id) => page.locator(`[data-testid="element"][data-id="${id}"]`)
const nameOf = (page, id) => card(page, id).getByTestId('name').inputValue()

async function commitName(page, id, value) {
  const input = card(page, id).getByTestId('name')
  await input.fill(value)
  await input.press('Enter')
}

/** Wait until the card shows that name (and the server has it). */
async function waitForName(page, api, id, name) {
  await waitFor(async () => (await nameOf(page, id)) === name, { what: `"${name}" on the card`, timeoutMs: 15000 })
  await waitForSameState(page, api)
}

/** Press the undo shortcut with the focus outside any text field. */
async function undoKey(page) {
  await page.locator('h1').click()
  await page.keyboard.press('Control+Z')
}

describe('history in the editor', { concurrency: false }, () => {
  test('a card\'s history panel lists the versions with their diffs and restores one', { timeout: 90000 }, async () => {
    const room = newRoom('restore')
    const api = roomApi(server.url, room)
    await api.put('c1', 'character', { name: 'Aria', hp: 3 })
    await api.patch('c1', { name: 'Aria B' })
    await api.patch('c1', { hp: 5, role: 'scout' })
    const page = await openPage(room, 'alice')
    await waitForSameState(page, api)

    await card(page, 'c1').getByTestId('history').click()
    const panel = card(page, 'c1').getByTestId('history-panel')
    await waitFor(async () => (await panel.getByTestId('version').count()) === 3, { what: 'three versions' })
    const versions = await panel.getByTestId('version').evaluateAll((els) => els.map((e) => [e.dataset.version, e.dataset.type]))
    assert.deepEqual(versions, [['3', 'updated'], ['2', 'updated'], ['1', 'created']])
    const diffs = await panel.getByTestId('diff').allTextContents()
    assert.match(diffs[0], /hp: 3 → 5/)
    assert.match(diffs[0], /role: added "scout"/)
    assert.match(diffs[1], /name: "Aria" → "Aria B"/)
    assert.match(diffs[2], /created/)

    // Restore version 1: a revert, seen on the card and on the server.
    await panel.locator('[data-testid="version"][data-version="1"] [data-testid="restore"]').click()
    await waitForName(page, api, 'c1', 'Aria')
    const snap = await api.snapshot()
    assert.deepEqual(snap.elements[0].data, { name: 'Aria', hp: 3 })
    assert.equal(snap.elements[0].version, 4)
    await waitFor(async () => (await panel.locator('[data-testid="version"][data-version="4"][data-type="reverted"]').count()) === 1, {
      what: 'the revert at the top of the panel',
    })

    // Restoring from a stale panel (someone changed it since) is said in words, and the panel reloads.
    await api.patch('c1', { hp: 9 })
    await waitFor(async () => (await card(page, 'c1').getAttribute('data-version')) === '5', { what: 'v5 on the card' })
    // The card already shows v5, so the panel's If-Match is current: make it stale by a write the page has not seen yet.
    // (revert*: the write names its actor, ?client=alice)
    await page.route('**/rooms/*/elements/c1/revert*', async (route) => {
      await api.patch('c1', { hp: 10 })
      await route.continue()
    })
    await panel.locator('[data-testid="version"][data-version="2"] [data-testid="restore"]').click()
    await waitFor(async () => /someone changed this element/.test((await panel.getByTestId('history-note').textContent()) ?? ''), {
      what: 'the conflict said in words',
    })
    await page.unroute('**/rooms/*/elements/c1/revert*')
    await waitFor(async () => (await panel.locator('[data-testid="version"][data-version="6"]').count()) === 1, { what: 'the panel reloaded' })
    assert.equal((await api.snapshot()).elements[0].data.hp, 10, 'the stale restore wrote nothing')
    await page.screenshot({ path: path.join(ARTIFACTS, 'history-panel.png') })
    await page.context().close()
  })

  test('undo across two windows: Ctrl+Z outside a text field reverts one\'s own last change, then the one before', { timeout: 90000 }, async () => {
    const room = newRoom('undo')
    const api = roomApi(server.url, room)
    await api.put('c1', 'character', { name: 'Aria' })
    const a = await openPage(room, 'alice')
    const b = await openPage(room, 'bob')
    await waitForSameState(a, api)

    await commitName(a, 'c1', 'Aria B')
    await waitForName(b, api, 'c1', 'Aria B')
    await commitName(a, 'c1', 'Aria C')
    await waitForName(b, api, 'c1', 'Aria C')
    await waitFor(async () => (await a.getByTestId('undo').getAttribute('data-undoable')) === '2', { what: 'two undoable changes' })

    // Ctrl+Z inside a text field is the field's own undo, not ours. (A synthetic key
    // event: Chromium's native undo would revert the name typed last, in any field.)
    await card(a, 'c1').getByTestId('description').evaluate((el) => {
      el.focus()
      el.dispatchEvent(new KeyboardEvent('keydown', { key: 'z', code: 'KeyZ', ctrlKey: true, bubbles: true }))
    })
    await new Promise((r) => setTimeout(r, 500))
    assert.equal((await api.snapshot()).elements[0].data.name, 'Aria C')
    assert.equal(await a.getByTestId('undo').getAttribute('data-undoable'), '2')

    await undoKey(a)
    await waitForName(a, api, 'c1', 'Aria B')
    await waitForName(b, api, 'c1', 'Aria B')
    await undoKey(a)
    await waitForName(a, api, 'c1', 'Aria')
    await waitForName(b, api, 'c1', 'Aria')
    const snap = await api.snapshot()
    assert.equal(snap.elements[0].version, 5, 'two edits and two reverts')
    assert.equal(await a.getByTestId('undo').isDisabled(), true, 'nothing left to undo')
    // Bob made no change: his Undo has nothing to do.
    assert.equal(await b.getByTestId('undo').isDisabled(), true)

    // The undo of a create deletes the element, with If-Match.
    await a.getByTestId('create-kind').fill('item')
    await a.getByTestId('create-name').fill('Lamp')
    await a.getByTestId('create-submit').click()
    await waitFor(async () => (await b.locator('[data-kind="item"]').count()) === 1, { what: 'the lamp on bob\'s page' })
    await waitForSameState(a, api)
    await a.getByTestId('undo').click()
    await waitFor(async () => (await b.locator('[data-kind="item"]').count()) === 0, { what: 'the lamp gone from bob\'s page' })
    await waitForSameState(a, api)
    await a.context().close()
    await b.context().close()
  })

  test('a deleted element is listed and brought back as it was', { timeout: 90000 }, async () => {
    const room = newRoom('deleted')
    const api = roomApi(server.url, room)
    await api.put('c1', 'character', { name: 'Aria', description: 'scout' })
    await api.put('p1', 'place', { name: 'Harbor' })
    await api.patch('c1', { description: 'captain' })
    await api.del('c1')
    const page = await openPage(room, 'alice')
    await waitForSameState(page, api)

    await page.getByTestId('deleted-toggle').click()
    const row = page.locator('[data-testid="deleted"][data-id="c1"]')
    await waitFor(async () => /Aria/.test((await row.textContent()) ?? ''), { what: 'Aria in the deleted list' })
    assert.equal(await page.getByTestId('deleted').count(), 1)

    // A delete made while the list is open joins it.
    await card(page, 'p1').getByTestId('delete').click()
    await card(page, 'p1').getByTestId('delete-confirm').click()
    await waitFor(async () => (await page.getByTestId('deleted').count()) === 2, { what: 'Harbor in the deleted list' })

    await row.getByTestId('bring-back').click()
    await waitFor(async () => (await card(page, 'c1').count()) === 1, { what: 'Aria back on the page' })
    await waitForSameState(page, api)
    const c1 = (await api.snapshot()).elements.find((e) => e.id === 'c1')
    assert.deepEqual(c1.data, { name: 'Aria', description: 'captain' })
    await waitFor(async () => (await row.count()) === 0, { what: 'Aria out of the deleted list' })
    assert.equal(await page.getByTestId('deleted').count(), 1)
    await page.context().close()
  })

  test('the time slider shows an earlier state read-only and returns to live', { timeout: 90000 }, async () => {
    const room = newRoom('time')
    const api = roomApi(server.url, room)
    await api.put('c1', 'character', { name: 'Aria' }) // seq 1
    await api.put('p1', 'place', { name: 'Harbor' }) // seq 2
    await api.patch('c1', { name: 'Aria B' }) // seq 3
    await api.del('p1') // seq 4
    const page = await openPage(room, 'alice')
    await waitForSameState(page, api)

    const seq = page.getByTestId('time-seq')
    await seq.fill('2')
    await seq.press('Enter')
    const view = page.getByTestId('time-view')
    await waitFor(async () => (await view.getAttribute('data-loading')) === 'false' && (await view.getAttribute('data-seq')) === '2', {
      what: 'the view as of seq 2',
    })
    assert.match(await page.getByTestId('time-banner').textContent(), /Viewing as of seq 2/)
    const shown = await page.getByTestId('time-element').evaluateAll((els) =>
      els.map((e) => [e.dataset.id, e.querySelector('[data-testid="time-name"]').textContent]),
    )
    assert.deepEqual(shown.sort(), [['c1', 'Aria'], ['p1', 'Harbor']])
    // Read-only: no editable card, no create form, no undo.
    assert.equal(await page.locator('[data-testid="element"]').count(), 0)
    assert.equal(await page.getByTestId('create-submit').count(), 0)
    assert.equal(await page.getByTestId('undo').isDisabled(), true)
    assert.equal(await page.locator('[data-testid="time-view"] input, [data-testid="time-view"] textarea').count(), 0)

    // A change meanwhile does not move the view.
    await api.patch('c1', { name: 'Aria C' })
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(await page.locator('[data-testid="time-element"][data-id="c1"] [data-testid="time-name"]').textContent(), 'Aria')
    await page.screenshot({ path: path.join(ARTIFACTS, 'time-travel.png') })

    await page.getByTestId('time-back').click()
    await waitFor(async () => (await page.getByTestId('time-view').count()) === 0, { what: 'back to live' })
    await waitForName(page, api, 'c1', 'Aria C')
    assert.equal(await card(page, 'p1').count(), 0)
    await page.context().close()
  })

  test('the time slider says, in words, that a seq is no longer reachable and shows the oldest one', { timeout: 90000 }, async () => {
    // A second server keeping 2 versions per element: early seqs become unreachable.
    const small = await startServer({ bin, db: path.join(tmp.dir, 'trimmed.db'), args: ['--versions-keep', '2'] })
    try {
      const room = newRoom('trimmed')
      const api = roomApi(small.url, room)
      await api.put('c1', 'character', { name: 'v1' }) // seq 1
      for (const n of ['v2', 'v3', 'v4']) await api.patch('c1', { name: n }) // seqs 2-4; v1 and v2 are dropped
      const ctx = await browser.newContext()
      const page = await ctx.newPage()
      await page.goto(`${small.url}/?room=${encodeURIComponent(room)}`)
      await waitForStatus(page, 'live', 15000)
      await waitForSameState(page, api)
      const seq = page.getByTestId('time-seq')
      await seq.fill('1')
      await seq.press('Enter')
      await waitFor(async () => (await page.getByTestId('time-error').count()) === 1, { what: 'the 410 in words' })
      assert.match(await page.getByTestId('time-error').textContent(), /can no longer be shown that far back.*oldest moment that can be shown is seq 3/s)
      await page.getByTestId('time-oldest').click()
      await waitFor(async () => (await page.locator('[data-testid="time-element"] [data-testid="time-name"]').allTextContents()).join() === 'v3', {
        what: 'the world as of seq 3',
      })
      assert.equal(await page.getByTestId('time-view').getAttribute('data-seq'), '3')
      await page.getByTestId('time-back').click()
      await waitForSameState(page, api)
      await ctx.close()
    } finally {
      await small.stop()
    }
  })
})

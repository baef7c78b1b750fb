// One build for any server: the editor served by server A reads /config.json
// (A's --web-server-url) at run time and talks to server B, another origin
// that allows A's in --cors-origins. Nothing was rebuilt for it.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'
import { buildServer, freePorts, launchBrowser, roomApi, serverState, startServer, tempDir, waitFor, waitForSameState, waitForStatus } from './harness.js'

let tmp, bin, api, web, browser

before(async () => {
  tmp = await tempDir('roomfeed-e2e-config-')
  bin = await buildServer(tmp.dir)
  const [apiPort, webPort] = await freePorts(2)
  api = await startServer({ bin, db: path.join(tmp.dir, 'api.db'), port: apiPort, args: ['--cors-origins', `http://127.0.0.1:${webPort}`] })
  web = await startServer({ bin, db: path.join(tmp.dir, 'web.db'), port: webPort, args: ['--web-server-url', api.url] })
  browser = await launchBrowser()
}, { timeout: 300000 })

after(async () => {
  await browser?.close()
  await web?.stop()
  await api?.stop()
  await tmp?.cleanup()
})

describe('run-time configuration', () => {
  test('the editor served by one server follows and writes the rooms of the server its /config.json names', async () => {
    const room = 'elsewhere'
    const remote = roomApi(api.url, room)
    const local = roomApi(web.url, room)
    await remote.put('character-0001', 'character', { name: 'Aria', description: 'on the API server' })

    const config = await (await fetch(`${web.url}/config.json`)).json()
    assert.deepEqual(config, { serverUrl: api.url })

    const page = await browser.newPage()
    const feeds = []
    page.on('request', (req) => {
      if (new URL(req.url()).pathname === '/events') feeds.push(new URL(req.url()).origin)
    })
    page.on('pageerror', (err) => console.log(`# page error: ${err.message}`))
    await page.goto(`${web.url}/?room=${room}`)
    await waitForStatus(page, 'live', 20000)
    await waitForSameState(page, remote)
    assert.ok(feeds.length > 0 && feeds.every((o) => o === api.url), `the feed is the API server's: ${feeds}`)

    // Live from the API server, and a write from the page lands there.
    await remote.put('place-0002', 'place', { name: 'Harbor', description: '' })
    await waitForSameState(page, remote)
    const name = page.locator('[data-testid="element"][data-id="character-0001"]').getByTestId('name')
    await name.fill('Aria of the API')
    await name.press('Enter')
    await waitFor(async () => (await remote.snapshot()).elements.find((e) => e.id === 'character-0001')?.data.name === 'Aria of the API', {
      timeoutMs: 15000,
      what: 'the write on the API server',
    })
    assert.equal((await serverState(local)).elements.length, 0, 'nothing went to the server that serves the page')
    await page.close()
  })
})

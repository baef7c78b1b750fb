// End-to-end test of the JS client over a bad link: the page's feed goes
// through a proxy that holds every chunk 20–60 ms, caps each direction at
// 64 KB/s and resets (RST) each connection after about 1.5 s on average,
// while another client writes to the room straight to the server. The page
// must receive every event exactly once, in order, and end with the
// server's state.

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import path from 'node:path'
import { buildServer, launchBrowser, roomApi, startServer, tempDir, waitFor, waitForSameState, waitForStatus } from './harness.js'

let tmp, bin, server, browser

before(async () => {
  tmp = await tempDir('roomfeed-e2e-badlink-')
  bin = await buildServer(tmp.dir)
  server = await startServer({ bin, db: path.join(tmp.dir, 'badlink.db') })
  browser = await launchBrowser()
}, { timeout: 300000 })

after(async () => {
  await browser?.close()
  await server?.stop()
  await tmp?.cleanup()
})

/**
 * A TCP proxy to port whose link can be made bad: setBad({latencyMs,
 * jitterMs, bytesPerSec, resetEveryMs}) applies to the chunks and
 * connections from then on; setBad(null) makes it good again.
 */
async function badLinkProxy(port) {
  let bad = null
  let resets = 0
  const pairs = new Set()
  const scheduleReset = (pair) => {
    if (!bad?.resetEveryMs) return
    const after = -Math.log(1 - Math.random()) * bad.resetEveryMs
    setTimeout(() => {
      if (!pairs.has(pair) || !bad) return
      resets += 1
      pair.client.resetAndDestroy()
      pair.upstream.resetAndDestroy()
    }, after)
  }
  const forward = (src, dst) => {
    let chain = Promise.resolve()
    src.on('data', (chunk) => {
      const b = bad
      if (!b) {
        chain = chain.then(() => { if (!dst.destroyed) dst.write(chunk) })
        return
      }
      const hold = b.latencyMs + Math.random() * b.jitterMs + (chunk.length * 1000) / b.bytesPerSec
      src.pause()
      chain = chain.then(
        () =>
          new Promise((resolve) =>
            setTimeout(() => {
              if (!dst.destroyed) dst.write(chunk)
              src.resume()
              resolve()
            }, hold),
          ),
      )
    })
  }
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    const pair = { client, upstream }
    pairs.add(pair)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      pairs.delete(pair)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    forward(client, upstream)
    forward(upstream, client)
    scheduleReset(pair)
  })
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  return {
    port: proxy.address().port,
    get resets() {
      return resets
    },
    setBad(b) {
      bad = b
      for (const pair of pairs) scheduleReset(pair)
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy()
        upstream.destroy()
      }
      await new Promise((r) => proxy.close(() => r()))
    },
  }
}

describe('a bad link', () => {
  test('latency, jitter, 64 KB/s and random resets: every event once, in order', { timeout: 120000 }, async () => {
    const room = `bad-${Date.now()}`
    const api = roomApi(server.url, room)
    const link = await badLinkProxy(server.port)
    const ctx = await browser.newContext()
    // Record every element event any EventSource of the page receives: its
    // room and seq (from the event's data and Last-Event-ID).
    await ctx.addInitScript(() => {
      const Native = window.EventSource
      const got = []
      window.__received = got
      window.EventSource = class extends Native {
        constructor(url, init) {
          super(url, init)
          const rec = (e) => {
            const data = JSON.parse(e.data)
            let seq = Number(e.lastEventId)
            if (Number.isNaN(seq)) {
              const part = e.lastEventId.split(',').find((p) => p.slice(0, p.lastIndexOf(':')) === data.room)
              seq = Number(part?.slice(part.lastIndexOf(':') + 1))
            }
            got.push({ room: data.room, seq })
          }
          for (const type of ['element.created', 'element.updated', 'element.deleted']) this.addEventListener(type, rec)
        }
      }
    })
    const page = await ctx.newPage()
    try {
      await page.goto(`http://127.0.0.1:${link.port}/?room=${encodeURIComponent(room)}`)
      await waitForStatus(page, 'live', 20000)
      link.setBad({ latencyMs: 20, jitterMs: 40, bytesPerSec: 64 << 10, resetEveryMs: 1500 })

      const writes = 150
      for (let i = 0; i < writes; i++) {
        await api.put(`e${i % 7}`, 'item', { name: `n${i}`, description: 'x'.repeat(i % 40) })
        await new Promise((r) => setTimeout(r, 40))
      }
      link.setBad(null)
      await waitForSameState(page, api, { timeoutMs: 30000 })
      assert.ok(link.resets > 0, `the link reset no connection (${link.resets}): the test proves nothing`)

      const got = (await page.evaluate(() => window.__received)).filter((e) => e.room === room).map((e) => e.seq)
      const want = Array.from({ length: writes }, (_, i) => i + 1)
      assert.deepEqual(got, want, `the page received seqs ${JSON.stringify(got.slice(0, 20))}… (${got.length}), want 1..${writes} once each`)
      console.log(`# bad link: ${writes} events received once each through ${link.resets} resets`)
    } finally {
      await ctx.close()
      await link.close()
    }
  })
})

// Test harness for the browser tests: builds the real roomfeed binary once,
// starts and stops servers on temporary SQLite databases, launches Debian's
// headless Chromium through playwright-core, and reads the editor's state
// from the page and the server's state from its HTTP API.

import { spawn, execFile } from 'node:child_process'
import net from 'node:net'
import { mkdtemp, rm, access } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { chromium } from 'playwright-core'

export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const REPO_DIR = path.resolve(WEB_DIR, '..')
export const DIST_DIR = process.env.ROOMFEED_WEB_DIR || path.join(WEB_DIR, 'dist')
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'

const run = promisify(execFile)

// Servers still running when this process ends (a test timed out, Ctrl-C)
// are killed with it.
const running = new Set()
process.once('exit', () => {
  for (const proc of running) proc.kill('SIGKILL')
})
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130))
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'roomfeed-e2e-') {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/**
 * The server binary: $ROOMFEED_BIN if set, else `go build ./cmd/roomfeed`
 * into dir (once per test run).
 */
export async function buildServer(dir) {
  if (process.env.ROOMFEED_BIN) return process.env.ROOMFEED_BIN
  await access(path.join(DIST_DIR, 'index.html')).catch(() => {
    throw new Error(`${DIST_DIR}/index.html is missing: run "npm run build" first (npm run test:e2e does)`)
  })
  const bin = path.join(dir, 'roomfeed')
  const t0 = Date.now()
  await run('go', ['build', '-o', bin, './cmd/roomfeed'], { cwd: REPO_DIR, maxBuffer: 16 << 20 })
  console.log(`# built ${bin} in ${Date.now() - t0} ms`)
  return bin
}

/**
 * Start a server. port 0 picks a free one; pass the port of a stopped server
 * to restart it at the same address; args: more flags (e.g. --presence-grace 500ms). Resolves once it prints "listening on".
 */
export function startServer({ bin, db, databaseUrl, port = 0, timeoutMs = 20000, args: extra = [], env = {} }) {
  const args = ['--addr', `127.0.0.1:${port}`, '--database-url', databaseUrl ?? `sqlite://${db}`, '--web-dir', DIST_DIR, ...extra]
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  running.add(proc)
  proc.once('exit', () => running.delete(proc))
  const stderr = []
  proc.stderr.on('data', (b) => {
    stderr.push(b.toString())
    if (process.env.E2E_SERVER_LOG) process.stderr.write(b)
  })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`server did not print "listening on" within ${timeoutMs} ms:\n${stderr.join('')}`))
    }, timeoutMs)
    proc.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited (${code}) before listening:\n${stderr.join('')}`))
    })
    proc.stdout.on('data', (b) => {
      out += b.toString()
      const m = out.match(/listening on (http:\/\/\S+)/)
      if (m) {
        clearTimeout(timer)
        proc.removeAllListeners('exit')
        const url = m[1].replace(/\/$/, '')
        const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })))
        resolve({
          url,
          port: Number(new URL(url).port),
          proc,
          exited,
          logs: () => stderr.join(''),
          /** SIGTERM and wait for the exit (SIGKILL after killAfterMs). */
          async stop(killAfterMs = 15000) {
            if (proc.exitCode !== null || proc.signalCode !== null) return exited
            proc.kill('SIGTERM')
            const t = setTimeout(() => proc.kill('SIGKILL'), killAfterMs)
            const r = await exited
            clearTimeout(t)
            return r
          },
        })
      }
    })
  })
}

/** A free TCP port on 127.0.0.1 (for a server whose own URL must be known before it starts). */
export async function freePort() {
  const [port] = await freePorts(1)
  return port
}

/**
 * n distinct free TCP ports on 127.0.0.1, held together while they are
 * picked. Give every server of a test its port from here: a server started
 * on port 0 may be handed a port picked earlier and not bound yet.
 */
export async function freePorts(n) {
  const servers = []
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer()
      servers.push(srv)
      await new Promise((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(0, '127.0.0.1', resolve)
      })
    }
    return servers.map((srv) => srv.address().port)
  } finally {
    await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(() => resolve()))))
  }
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/** A small HTTP client for one room (the "other client" of the tests). */
export function roomApi(base, room) {
  const url = (p = '') => `${base}/rooms/${encodeURIComponent(room)}/elements${p}`
  async function call(method, p, body, headers = {}) {
    const res = await fetch(url(p), {
      method,
      headers: { 'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const json = await res.json().catch(() => null)
    if (!res.ok) {
      const e = new Error(`${method} ${p}: ${res.status} ${JSON.stringify(json)}`)
      e.status = res.status
      throw e
    }
    return json
  }
  return {
    snapshot: () => call('GET', ''),
    put: (id, kind, data) => call('PUT', `/${encodeURIComponent(id)}`, { kind, data }),
    patch: (id, data, ifMatch) =>
      call('PATCH', `/${encodeURIComponent(id)}`, data, {
        'Content-Type': 'application/merge-patch+json',
        ...(ifMatch !== undefined ? { 'If-Match': `"${ifMatch}"` } : {}),
      }),
    del: (id) => call('DELETE', `/${encodeURIComponent(id)}`),
  }
}

/** The editor's elements as rendered: [{id, kind, version, name, description}] sorted by id. */
export function pageState(page) {
  return page.$$eval('[data-testid="element"]', (cards) =>
    cards
      .map((c) => ({
        id: c.dataset.id,
        kind: c.dataset.kind,
        version: Number(c.dataset.version),
        name: c.querySelector('[data-testid="name"]').value,
        description: c.querySelector('[data-testid="description"]').value,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : 1)),
  )
}

/** The server's snapshot in the same shape, plus its cursor. */
export async function serverState(api) {
  const snap = await api.snapshot()
  return {
    cursor: snap.cursor,
    elements: snap.elements
      .map((e) => ({
        id: e.id,
        kind: e.kind,
        version: e.version,
        name: String(e.data?.name ?? ''),
        description: String(e.data?.description ?? ''),
      }))
      .sort((a, b) => (a.id < b.id ? -1 : 1)),
  }
}

/** Poll fn until it returns a truthy value; throws the last error/value after timeoutMs. */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`)
    }
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** Wait until the page renders exactly the server's state (and cursor). */
export async function waitForSameState(page, api, { timeoutMs = 15000 } = {}) {
  let diff = ''
  try {
    await waitFor(
      async () => {
        const [mine, theirs] = await Promise.all([pageState(page), serverState(api)])
        const cursor = await page.getAttribute('[data-room]', 'data-cursor')
        const a = JSON.stringify(mine)
        const b = JSON.stringify(theirs.elements)
        diff = `page ${mine.length} elements at cursor ${cursor}, server ${theirs.elements.length} at ${theirs.cursor}`
        return a === b && cursor === theirs.cursor
      },
      { timeoutMs, what: 'page state == server state' },
    )
  } catch (err) {
    err.message += ` (${diff})`
    throw err
  }
}

export function statusOf(page) {
  return page.textContent('[data-testid="status"]')
}

export function waitForStatus(page, status, timeoutMs = 10000) {
  return page.waitForFunction(
    (s) => document.querySelector('[data-testid="status"]')?.textContent === s,
    status,
    { timeout: timeoutMs, polling: 20 },
  )
}

/**
 * Every event of a room as the server's history holds it (the feed replayed
 * from cursor 0 up to the snapshot's cursor): [{ seq, type, op_id, element, ... }].
 */
export async function feedHistory(base, room, { timeoutMs = 15000 } = {}) {
  const snap = await (await fetch(`${base}/rooms/${encodeURIComponent(room)}/elements`)).json()
  const head = Number(snap.cursor)
  const events = []
  if (!head) return events
  const ctl = new AbortController()
  const timer = setTimeout(() => ctl.abort(), timeoutMs)
  try {
    const res = await fetch(`${base}/rooms/${encodeURIComponent(room)}/events?last_event_id=0`, {
      signal: ctl.signal,
      headers: { Accept: 'text/event-stream' },
    })
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n')
      let i
      while ((i = buf.indexOf('\n\n')) !== -1) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        let id = null
        let type = 'message'
        let data = ''
        for (const line of block.split('\n')) {
          if (line.startsWith('id:')) id = line.slice(3).trim()
          else if (line.startsWith('event:')) type = line.slice(6).trim()
          else if (line.startsWith('data:')) data += line.slice(5).trim()
        }
        if (!id || !data) continue
        events.push({ ...JSON.parse(data), seq: Number(id), type })
        if (Number(id) >= head) return events
      }
    }
    return events
  } finally {
    clearTimeout(timer)
    ctl.abort()
  }
}

/**
 * A TCP proxy on a free loopback port to target (e.g. PostgreSQL): stop()
 * cuts every connection and refuses new ones (an outage), start() serves
 * again on the same port.
 */
export async function tcpProxy(targetPort, targetHost = '127.0.0.1') {
  const sockets = new Set()
  let server = null
  let port = 0
  const listen = () =>
    new Promise((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(targetPort, targetHost)
        sockets.add(client)
        sockets.add(upstream)
        const drop = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on('error', drop).on('close', drop)
        upstream.on('error', drop).on('close', drop)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        port = server.address().port
        resolve()
      })
    })
  await listen()
  return {
    get port() {
      return port
    },
    start: listen,
    async stop() {
      for (const s of sockets) s.destroy()
      sockets.clear()
      await new Promise((r) => server.close(() => r()))
    },
  }
}

/** Run psql (PostgreSQL at 127.0.0.1:5432 by default, trust auth). Resolves to stdout. */
export async function psql(sql, { url = process.env.ROOMFEED_E2E_POSTGRES_ADMIN_URL || 'postgres://postgres@127.0.0.1:5432/postgres' } = {}) {
  const { stdout } = await run('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql])
  return stdout
}

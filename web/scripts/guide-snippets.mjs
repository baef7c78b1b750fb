// Runs every fenced code block of docs/from-socketio.md (called by
// pack-test.mjs, in the stranger project where @roomfeed/client and
// @roomfeed/pinia are installed from their tarballs).
//
// Every block names how it is run in its fence's info string, ```js run=NAME
// (GitHub shows the language and ignores the rest). The one ```go block is
// run by TestGuideGoSnippet in cmd/roomfeed/guide_test.go (go test), which
// compares it with rollBot line for line. A block without run=, a name no
// scenario below runs, or a count of blocks run that differs from the count
// in the guide fails the pack test.
//
//   - the Flask-SocketIO "before" snippets (python run=flask-*) and the
//     socket.io-client one (js run=socketio-client) run together: a Flask app
//     made of them on Debian's python3-flask-socketio, and a Node.js
//     socket.io-client that joins w1 and sees the rename;
//   - the Python write, the curls and the Node.js bot run in Node.js against a
//     real roomfeed server; the CORS line runs the server it starts;
//   - the browser snippets (follow, presence, signals, change, pinia, patch,
//     outbox) are built with Vite into one page per snippet (a prelude gives
//     them what the text around them defines: rf, store, drawCursor…) and
//     run in headless Chromium against a fresh roomfeed server each.

import { execFile, spawn } from 'node:child_process'
import assert from 'node:assert/strict'
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { REPO_DIR, freePort, startServer, roomApi, waitFor } from '../e2e/harness.js'

const run = promisify(execFile)
export const GUIDE = path.join(REPO_DIR, 'docs', 'from-socketio.md')
const GO_TEST = path.join(REPO_DIR, 'cmd', 'roomfeed', 'guide_test.go')
const FLASK_PYTHON = process.env.FLASK_PYTHON || '/usr/bin/python3'
const DEFAULT_URL = 'http://127.0.0.1:8080'

/** The fenced blocks of the guide: [{ lang, run, code, line }]. */
export async function guideBlocks(file = GUIDE) {
  const text = await readFile(file, 'utf8')
  const blocks = []
  const re = /^```(\w*)([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm
  let m
  while ((m = re.exec(text))) {
    const line = text.slice(0, m.index).split('\n').length
    blocks.push({ lang: m[1], run: /\brun=([\w-]+)/.exec(m[2])?.[1] ?? null, code: m[3], line })
  }
  return blocks
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function sh(cmd, args, opts) {
  try {
    return await run(cmd, args, { maxBuffer: 16 << 20, ...opts })
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`)
  }
}

/** A child process whose output is kept; lines() parses its JSON lines. */
function child(cmd, args, opts) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  let out = ''
  proc.stdout.on('data', (b) => (out += b))
  proc.stderr.on('data', (b) => (out += b))
  return {
    proc,
    output: () => out,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l)),
    stop: () => proc.exitCode === null && proc.signalCode === null && proc.kill('SIGTERM'),
  }
}

const history = async (base, room = 'w1') =>
  (await (await fetch(`${base}/rooms/${room}/events?format=json&after=0&limit=1000`)).json()).events

/** The SSE stream of a room, read raw: text() is what arrived so far. */
async function rawStream(url) {
  const ctl = new AbortController()
  const res = await fetch(url, { signal: ctl.signal, headers: { Accept: 'text/event-stream' } })
  assert.equal(res.status, 200, `GET ${url}`)
  let text = ''
  const dec = new TextDecoder()
  ;(async () => {
    try {
      for await (const chunk of res.body) text += dec.decode(chunk, { stream: true })
    } catch {}
  })()
  return { text: () => text, close: () => ctl.abort() }
}

// ---------------------------------------------------------------------------
// Flask-SocketIO and socket.io-client: the code a Socket.IO user comes from.

/** The Flask app of the guide's Flask-SocketIO snippets (cors first: it makes socketio). */
function flaskApp(blocks, port) {
  const code = (name) => blocks.find((b) => b.run === name).code
  return [
    'from flask import Flask, request',
    'from flask_socketio import SocketIO, join_room',
    'app = Flask(__name__)',
    code('flask-cors'),
    code('flask-join'),
    code('flask-rename'),
    `socketio.run(app, host="127.0.0.1", port=${port}, allow_unsafe_werkzeug=True)`,
    '',
  ].join('\n')
}

async function runSocketIO(ctx, blocks) {
  const ok = await sh(FLASK_PYTHON, ['-c', 'import flask_socketio']).catch(() => null)
  assert.ok(ok, `${FLASK_PYTHON} cannot import flask_socketio: apt-get install python3-flask-socketio (the guide's Flask-SocketIO snippets run on it)`)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  await writeFile(path.join(ctx.app, 'flask_app.py'), flaskApp(blocks, port))
  const flask = child(FLASK_PYTHON, ['flask_app.py'], { cwd: ctx.app })
  ctx.cleanups.push(() => flask.stop())
  await waitFor(
    async () => (await fetch(`${url}/socket.io/?EIO=4&transport=polling`).catch(() => null))?.status === 200,
    { timeoutMs: 20000, intervalMs: 100, what: `the Flask-SocketIO app; its output:\n${flask.output()}` },
  )
  // cors_allowed_origins: the listed origin is allowed, another refused.
  const poll = (origin) => fetch(`${url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } })
  const allowed = await poll('https://app.example')
  assert.equal(allowed.status, 200)
  assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example')
  assert.equal((await poll('https://evil.example')).status, 400, 'Flask-SocketIO refuses an origin not listed')

  // socket.io-client: joins w1 (the join handler), and its handler updates the store.
  const client = blocks.find((b) => b.run === 'socketio-client').code
  await writeFile(
    path.join(ctx.app, 'sio_client.mjs'),
    `import { io } from 'socket.io-client'
const socket = io(process.argv[2])
const store = { updateState: (id, patch) => console.log(JSON.stringify({ updateState: [id, patch] })) }
${client}
socket.on('connect', () => socket.emit('join', 'w1', () => console.log(JSON.stringify({ joined: 'w1' }))))
`,
  )
  const sio = child(process.execPath, ['sio_client.mjs', url], { cwd: ctx.app })
  ctx.cleanups.push(() => sio.stop())
  await waitFor(() => sio.lines().find((l) => l.joined), { timeoutMs: 20000, what: `socket.io-client joined w1: ${sio.output()}` })
  const res = await fetch(`${url}/characters/c1`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'Aria' }),
  })
  assert.equal(res.status, 204)
  await waitFor(() => sio.lines().find((l) => l.updateState), { timeoutMs: 20000, what: `store.updateState: ${sio.output()}` })
  assert.deepEqual(sio.lines().find((l) => l.updateState).updateState, ['c1', { name: 'Aria' }])
  sio.stop()
  flask.stop()
}

// ---------------------------------------------------------------------------
// Node.js and the shell, against the pack test's server.

async function runPythonWrite(ctx, [b]) {
  const base = ctx.server.url
  await roomApi(base, 'w1').put('c1', 'character', { name: 'before' })
  await sh('python3', ['-c', b.code.replaceAll(DEFAULT_URL, base)], { cwd: ctx.app })
  const c1 = await (await fetch(`${base}/rooms/w1/elements/c1`)).json()
  assert.equal(c1.data?.name, 'Aria', `the Python snippet renamed c1: ${JSON.stringify(c1)}`)
}

const curl = (code, base) => code.replaceAll(DEFAULT_URL, base).replaceAll('curl ', 'curl -fsS -o /dev/null ')

async function runCurlMessage(ctx, [b]) {
  const base = ctx.server.url
  const stream = await rawStream(`${base}/events?room=w1`)
  try {
    await sh('bash', ['-euc', curl(b.code, base)], { cwd: ctx.app })
    const chat = (await history(base)).filter((e) => e.type === 'chat')
    assert.equal(chat.length, 1, `one chat message in the history: ${JSON.stringify(chat)}`)
    assert.deepEqual(chat[0].data, { from: 'aria', text: 'hello' })
    await waitFor(() => /event: chat\n/.test(stream.text()), { timeoutMs: 10000, what: 'the chat message on the feed' })
  } finally {
    stream.close()
  }
}

async function runCurlSignal(ctx, [b]) {
  const base = ctx.server.url
  const stream = await rawStream(`${base}/events?room=w1&client=bram`)
  try {
    await sleep(200) // the stream is open (status 200); give the subscription a moment
    await sh('bash', ['-euc', curl(b.code, base)], { cwd: ctx.app })
    await waitFor(() => /event: cursor\n/.test(stream.text()), { timeoutMs: 10000, what: `the signal on the feed:\n${stream.text()}` })
    const data = JSON.parse(/event: cursor\n(?:id:[^\n]*\n)?data: ([^\n]*)/.exec(stream.text())[1])
    assert.equal(data.person, 'aria')
    assert.deepEqual(data.data, { x: 10, y: 20 })
    assert.equal((await history(base)).filter((e) => e.type === 'cursor').length, 0, 'a signal never enters the history')
  } finally {
    stream.close()
  }
}

async function runBot(ctx, [b]) {
  const base = ctx.server.url
  await writeFile(path.join(ctx.app, 'bot.mjs'), b.code.replaceAll(DEFAULT_URL, base))
  const bot = child(process.execPath, ['bot.mjs'], { cwd: ctx.app })
  try {
    // The bot follows w1 once its stream is open; ask until it answers.
    await waitFor(
      async () => {
        const res = await fetch(`${base}/rooms/w1/messages`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ event: 'roll_request', data: { sides: 6 } }),
        })
        assert.equal(res.status, 201)
        await sleep(500)
        return (await history(base)).find((e) => e.type === 'roll_result')
      },
      { timeoutMs: 30000, intervalMs: 10, what: `the bot's roll_result; bot output: ${bot.output()}` },
    )
    const result = (await history(base)).find((e) => e.type === 'roll_result')
    assert.ok(result.data.value >= 1 && result.data.value <= 6, `a die value: ${JSON.stringify(result)}`)
  } finally {
    bot.stop()
  }
}

/** The CORS line starts a server: the binary stands for `go run ./cmd/roomfeed`. */
async function runCors(ctx, [b]) {
  assert.match(b.code, /go run \.\/cmd\/roomfeed/)
  const script = b.code.replace('go run ./cmd/roomfeed', 'exec "$ROOMFEED_BIN"')
  const srv = child('bash', ['-euc', script], {
    cwd: REPO_DIR,
    env: {
      ...process.env,
      ROOMFEED_BIN: ctx.bin,
      ROOMFEED_ADDR: '127.0.0.1:0',
      DATABASE_URL: `sqlite://${path.join(ctx.dir, 'cors.db')}`,
      ROOMFEED_WEB_DIR: path.join(ctx.app, 'dist'),
    },
  })
  ctx.cleanups.push(() => srv.stop())
  const base = await waitFor(() => /listening on (http:\/\/\S+)/.exec(srv.output())?.[1].replace(/\/$/, ''), {
    timeoutMs: 20000,
    what: `the server of the CORS line: ${srv.output()}`,
  })
  const preflight = (origin) =>
    fetch(`${base}/rooms/w1/elements/c1`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'PATCH', 'Access-Control-Request-Headers': 'content-type' },
    })
  const ok = await preflight('https://app.example')
  assert.ok(ok.status < 300, `preflight from the listed origin: ${ok.status}`)
  assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example')
  const other = await preflight('https://evil.example')
  assert.equal(other.headers.get('access-control-allow-origin'), null, 'no CORS for an origin not listed')
  srv.stop()
}

// ---------------------------------------------------------------------------
// Browser snippets: one Vite-built page each, in headless Chromium.

const RF = `import { connect as __connect } from '@roomfeed/client'
const rf = __connect({ client: new URLSearchParams(location.search).get('client') ?? 'aria' })
`
const PRELUDES = {
  follow: '',
  presence: RF,
  signals: `${RF}const __seen = []
const drawCursor = (person, data) => __seen.push({ person, data })
`,
  change: `${RF}const __store = new Map()
const store = {
  replaceAll: (list) => { __store.clear(); for (const e of list) __store.set(e.id, e) },
  set: (id, e) => __store.set(id, e),
  remove: (id) => __store.delete(id),
}
`,
  pinia: RF,
  // room has the version c1 had, and someone changed its name since: the
  // page left the room before that change (its state stays readable).
  patch: `${RF}const __conflicts = []
const showConflict = (conflicts) => __conflicts.push(conflicts)
const room = rf.follow('w1')
await new Promise((resolve) => room.on('snapshot', resolve))
rf.leave('w1')
await fetch('/rooms/w1/elements/c1', { method: 'PATCH', headers: { 'Content-Type': 'application/merge-patch+json' }, body: JSON.stringify({ name: 'Bram' }) })
`,
  outbox: RF,
}
const EPILOGUES = {
  follow: 'window.__guide = { rf, w1, w2 }',
  presence: 'window.__guide = { rf, room }',
  signals: 'window.__guide = { rf, room, seen: __seen }',
  change: 'window.__guide = { rf, room, names: () => Object.fromEntries([...__store].map(([id, e]) => [id, e.data.name])) }',
  pinia: `import { createApp as __createApp, h as __h } from 'vue'
import { createPinia as __createPinia } from 'pinia'
const __App = {
  setup() {
    const room = useRoom('w1')
    return () => __h('main', { 'data-status': room.status }, Object.values(room.elements).map((el) => __h('li', { key: el.id, 'data-id': el.id }, String(el.data.name))))
  },
}
__createApp(__App).use(__createPinia()).mount(document.body.appendChild(document.createElement('div')))
window.__guide = { rf }`,
  patch: 'window.__guide = { rf, room, conflicts: __conflicts }',
  outbox: 'window.__guide = { rf, outbox }',
}

/** Write the pages of the browser snippets and build them into app/dist/guide. */
async function buildBrowserSnippets(ctx, blocks) {
  const root = path.join(ctx.app, 'guide')
  await rm(root, { recursive: true, force: true })
  await mkdir(path.join(root, 'snippets'), { recursive: true })
  for (const b of blocks) {
    await writeFile(path.join(root, 'snippets', `${b.run}.js`), `${PRELUDES[b.run]}\n${b.code}\n${EPILOGUES[b.run]}\n`)
  }
  // run.html, not index.html: the server answers /guide/index.html with a
  // redirect to /guide/, which is the editor's route fallback.
  await writeFile(
    path.join(root, 'run.html'),
    `<!doctype html><html><head><meta charset="utf-8"><title>guide</title></head>
<body><script type="module" src="./main.js"></script></body></html>
`,
  )
  await writeFile(
    path.join(root, 'main.js'),
    `const snippets = import.meta.glob('./snippets/*.js')
const name = new URLSearchParams(location.search).get('snippet')
window.__guideError = null
snippets[\`./snippets/\${name}.js\`]().catch((err) => { window.__guideError = String(err?.stack ?? err) })
`,
  )
  await writeFile(
    path.join(root, 'vite.config.mjs'),
    `export default {
  root: ${JSON.stringify(root)},
  base: '/guide/',
  logLevel: 'warn',
  build: {
    outDir: ${JSON.stringify(path.join(ctx.app, 'dist', 'guide'))},
    emptyOutDir: true,
    target: 'esnext',
    rollupOptions: { input: ${JSON.stringify(path.join(root, 'run.html'))} },
  },
}
`,
  )
  await sh(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--config', 'guide/vite.config.mjs'], { cwd: ctx.app })
}

/** A fresh server for one snippet (the snippets all use w1 and c1). */
async function snippetServer(ctx, name, args = []) {
  const server = await startServer({
    bin: ctx.bin,
    db: path.join(ctx.dir, `guide-${name}.db`),
    args: ['--web-dir', path.join(ctx.app, 'dist'), ...args],
  })
  ctx.cleanups.push(() => server.stop())
  return server
}

async function openSnippet(ctx, server, name, client = 'aria') {
  const page = await ctx.browser.newPage()
  const logs = []
  page.on('console', async (msg) => {
    try {
      logs.push(await Promise.all(msg.args().map((a) => a.jsonValue())))
    } catch {
      logs.push([msg.text()])
    }
  })
  page.on('pageerror', (err) => logs.push(['pageerror', String(err)]))
  await page.goto(`${server.url}/guide/run.html?snippet=${name}&client=${client}`)
  page.guide = (fn, arg) => page.evaluate(fn, arg)
  page.logs = logs
  page.noError = async () => {
    const err = await page.evaluate(() => window.__guideError)
    assert.equal(err, null, `the ${name} snippet threw`)
  }
  page.until = (fn, what, arg) =>
    waitFor(
      async () => {
        const err = await page.evaluate(() => window.__guideError)
        if (err) throw new Error(`the ${name} snippet threw: ${err}`)
        return page.evaluate(fn, arg)
      },
      { timeoutMs: 20000, what: `${name}: ${what}; console: ${JSON.stringify(logs)}` },
    )
  return page
}

const BROWSER = {
  async follow(ctx) {
    const server = await snippetServer(ctx, 'follow')
    await roomApi(server.url, 'w1').put('c1', 'character', { name: 'Aria' })
    await roomApi(server.url, 'w2').put('c2', 'character', { name: 'Bram' })
    const page = await openSnippet(ctx, server, 'follow')
    await page.until(() => window.__guide?.w1.status === 'live' && window.__guide.w1.elements.get('c1')?.data.name === 'Aria', 'w1 live with c1')
    await page.until(() => JSON.stringify(window.__guide.rf.hub.streamRooms) === '["w1"]' && window.__guide.rf.hub.status === 'live', 'one stream, w1 only, after leave')
    assert.deepEqual(await page.guide(() => [...window.__guide.rf.rooms.keys()]), ['w1'])
    await roomApi(server.url, 'w1').put('c3', 'character', { name: 'Cai' })
    await page.until(() => window.__guide.w1.elements.get('c3')?.data.name === 'Cai', 'a live change in w1')
    await page.close()
  },

  async presence(ctx) {
    const server = await snippetServer(ctx, 'presence', ['--presence-grace', '300ms'])
    const a = await openSnippet(ctx, server, 'presence', 'aria')
    const online = (page, want) =>
      waitFor(() => page.logs.find((l) => l[0] === 'online:' && JSON.stringify([...l[1]].sort()) === JSON.stringify(want)), {
        timeoutMs: 20000,
        what: `console.log('online:', ${JSON.stringify(want)}); console: ${JSON.stringify(page.logs)}`,
      })
    await online(a, ['aria'])
    const b = await openSnippet(ctx, server, 'presence', 'bram')
    await online(a, ['aria', 'bram'])
    await b.close()
    await waitFor(() => a.logs.filter((l) => l[0] === 'online:' && JSON.stringify(l[1]) === '["aria"]').length >= 2, {
      timeoutMs: 20000,
      what: `bram left: ${JSON.stringify(a.logs)}`,
    })
    await a.noError()
    await a.close()
  },

  async signals(ctx) {
    const server = await snippetServer(ctx, 'signals')
    const b = await openSnippet(ctx, server, 'signals', 'bram')
    await b.until(() => window.__guide?.room.status === 'live', 'bram live')
    const a = await openSnippet(ctx, server, 'signals', 'aria')
    await b.until(() => window.__guide.seen.some((s) => s.person === 'aria' && s.data.x === 10 && s.data.y === 20), "aria's cursor drawn on bram's page")
    await a.noError()
    assert.equal((await history(server.url)).length, 0, 'signals never enter the history')
    await a.close()
    await b.close()
  },

  async change(ctx) {
    const server = await snippetServer(ctx, 'change')
    const api = roomApi(server.url, 'w1')
    await api.put('c1', 'character', { name: 'Aria' })
    const page = await openSnippet(ctx, server, 'change')
    const names = (want, what) => page.until((w) => JSON.stringify(window.__guide?.names()) === w, what, JSON.stringify(want))
    await names({ c1: 'Aria' }, 'the snapshot in the store')
    await api.put('c2', 'character', { name: 'Bram' })
    await names({ c1: 'Aria', c2: 'Bram' }, 'a create')
    await api.patch('c1', { name: 'Ana' })
    await names({ c1: 'Ana', c2: 'Bram' }, 'an update')
    await api.del('c2')
    await names({ c1: 'Ana' }, 'a delete')
    await page.close()
  },

  async pinia(ctx) {
    const server = await snippetServer(ctx, 'pinia')
    const api = roomApi(server.url, 'w1')
    await api.put('c1', 'character', { name: 'Aria' })
    const page = await openSnippet(ctx, server, 'pinia')
    const items = () => page.$$eval('li', (lis) => lis.map((li) => li.textContent))
    await page.until(() => document.querySelector('main')?.dataset.status === 'live', 'the store live')
    await waitFor(async () => JSON.stringify(await items()) === '["Aria"]', { timeoutMs: 20000, what: 'c1 in the component' })
    await api.patch('c1', { name: 'Ana' })
    await waitFor(async () => JSON.stringify(await items()) === '["Ana"]', { timeoutMs: 20000, what: 'a live change in the component' })
    await page.noError()
    await page.close()
  },

  async patch(ctx) {
    const server = await snippetServer(ctx, 'patch')
    await roomApi(server.url, 'w1').put('c1', 'character', { name: 'Aria?' })
    const page = await openSnippet(ctx, server, 'patch')
    const conflicts = await page.until(() => window.__guide?.conflicts[0], 'showConflict called')
    assert.deepEqual(
      conflicts.map((c) => [c.path, c.theirs, c.mine]),
      [['/name', 'Bram', 'Aria']],
    )
    const c1 = await (await fetch(`${server.url}/rooms/w1/elements/c1`)).json()
    assert.equal(c1.data.name, 'Bram', "the conflict kept theirs on the server")
    await page.close()
  },

  async outbox(ctx) {
    const server = await snippetServer(ctx, 'outbox')
    const api = roomApi(server.url, 'w1')
    await api.put('c1', 'character', { name: 'Aria?', hp: 1 })
    await api.patch('c1', { hp: 2 })
    const v3 = await api.patch('c1', { hp: 3 })
    assert.equal(v3.version, 3)
    const page = await openSnippet(ctx, server, 'outbox')
    await waitFor(async () => (await api.snapshot()).elements.find((e) => e.id === 'c1')?.data.name === 'Aria', {
      timeoutMs: 20000,
      what: 'the outbox wrote c1',
    })
    await page.noError()
    await sleep(500)
    const renames = (await history(server.url)).filter((e) => e.element?.data?.name === 'Aria')
    assert.equal(renames.length, 1, `the outbox's write landed once: ${JSON.stringify(renames)}`)
    await page.close()
  },
}

/**
 * Run every block of the guide. ctx: { app, dir, bin, server, browser }.
 * Answers { blocks, ran } (ran: the names of the blocks run here, plus the
 * Go block, run by go test).
 */
export async function runGuide(ctx, { only = null } = {}) {
  const blocks = await guideBlocks()
  const cleanups = []
  const c = { ...ctx, cleanups }
  const ran = []
  const named = (names) =>
    names.map((n) => {
      const b = blocks.filter((x) => x.run === n)
      assert.equal(b.length, 1, `docs/from-socketio.md has one block with run=${n}`)
      return b[0]
    })
  const scenarios = [
    [['flask-cors', 'flask-join', 'flask-rename', 'socketio-client'], runSocketIO],
    [['python-write'], runPythonWrite],
    [['curl-message'], runCurlMessage],
    [['curl-signal'], runCurlSignal],
    [['bot'], runBot],
    [['cors'], runCors],
  ]
  const browserNames = Object.keys(BROWSER)
  const known = new Set([...scenarios.flatMap(([n]) => n), ...browserNames])
  for (const b of blocks) {
    if (b.lang === 'go') continue
    assert.ok(b.run, `docs/from-socketio.md:${b.line}: a \`\`\`${b.lang} block without run=NAME (every block is run by a test)`)
    assert.ok(known.has(b.run), `docs/from-socketio.md:${b.line}: run=${b.run} is run by no scenario of web/scripts/guide-snippets.mjs`)
  }
  try {
    // The Go block: TestGuideGoSnippet (cmd/roomfeed/guide_test.go) reads the
    // first Go block of the guide, compares it with rollBot and runs it.
    const goBlocks = blocks.filter((b) => b.lang === 'go')
    assert.equal(goBlocks.length, 1, 'the guide has one Go block (TestGuideGoSnippet checks the first)')
    const goTest = await readFile(GO_TEST, 'utf8')
    assert.ok(goTest.includes('func TestGuideGoSnippet(') && goTest.includes('"```go\\n"'), `${GO_TEST} runs the guide's Go block`)
    ran.push('go (TestGuideGoSnippet)')

    for (const [names, fn] of scenarios) {
      if (only && !names.some((n) => only.includes(n))) continue
      console.log(`#   guide: ${names.join(', ')}`)
      await fn(c, named(names))
      ran.push(...names)
    }
    await buildBrowserSnippets(c, named(browserNames))
    for (const name of browserNames) {
      if (only && !only.includes(name)) continue
      console.log(`#   guide (Chromium): ${name}`)
      await BROWSER[name](c)
      ran.push(name)
    }
  } finally {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {})
  }
  if (only) return { blocks, ran }
  assert.equal(ran.length, blocks.length, `every fenced block of the guide is run: ${blocks.length} blocks, ${ran.length} run (${ran.join(', ')})`)
  return { blocks, ran }
}

// `node scripts/guide-snippets.mjs DIR`: run the guide again in a stranger
// project kept by `KEEP_STRANGER=1 npm run test:pack` (DIR is the kept
// directory; its roomfeed binary is reused). GUIDE_ONLY=follow,patch runs
// those scenarios only.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { launchBrowser } = await import('../e2e/harness.js')
  const dir = path.resolve(process.argv[2] ?? '.')
  const app = path.join(dir, 'app')
  const bin = process.env.ROOMFEED_BIN || path.join(dir, 'roomfeed')
  const server = await startServer({ bin, db: path.join(dir, `guide-${Date.now()}.db`), args: ['--web-dir', path.join(app, 'dist')] })
  const browser = await launchBrowser()
  try {
    const only = process.env.GUIDE_ONLY?.split(',') ?? null // some scenarios only (no count check)
    const { blocks, ran } = await runGuide({ app, dir, bin, server, browser }, { only })
    console.log(`# ok: ${ran.length} of ${blocks.length} blocks of the guide run`)
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    await browser.close()
    await server.stop()
  }
}

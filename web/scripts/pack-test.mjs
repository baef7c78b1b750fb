// The stranger test: can someone outside this repository use the packages?
// It packs @roomfeed/client and @roomfeed/pinia with `npm pack`, installs
// the tarballs (and nothing else of ours) in a fresh project under the
// system's temporary directory, type-checks a Node.js script and a Vue app
// written against them with `tsc --noEmit`, then runs both against a real
// roomfeed server (the embedded default on 127.0.0.1, a free port):
//   - the Node.js script tails a room and writes to it through the outbox;
//   - the Vue app, built with Vite and served by that server, shows in
//     headless Chromium the changes others make, live.
// Then it runs every fenced block of docs/from-socketio.md (guide-snippets.mjs).
// Needs the npm registry (vue, pinia, vite, typescript, eventsource,
// socket.io-client), go, Chromium like the e2e tests, and Debian's
// python3-flask-socketio for the guide's Flask-SocketIO snippets. KEEP_STRANGER=1 keeps the directory.

import { execFile, spawn } from 'node:child_process'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { REPO_DIR, WEB_DIR, launchBrowser, roomApi, startServer, waitFor } from '../e2e/harness.js'
import { runGuide } from './guide-snippets.mjs'

const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

function step(what) {
  console.log(`# ${new Date().toISOString().slice(11, 19)} ${what}`)
}

async function sh(cmd, args, cwd) {
  try {
    return await run(cmd, args, { cwd, maxBuffer: 64 << 20, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } })
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`)
  }
}

const FILES = {
  'package.json': JSON.stringify({ name: 'stranger', private: true, type: 'module' }, null, 2),

  // The ~20-line Node.js script: tails a room, writes to it, reads its history.
  'tail.mjs': `// @ts-check
import { connect, createOutbox, memoryStorage } from '@roomfeed/client'
import { EventSource } from 'eventsource'

const [baseUrl, room] = process.argv.slice(2)
const rf = connect({ baseUrl, EventSource, client: 'node-script' })
const feed = rf.follow(room)
const say = (/** @type {object} */ line) => console.log(JSON.stringify(line))
feed.on('change', ({ id, element }) => say({ change: id, name: element?.data?.name ?? null, deleted: !element }))
let wrote = false
feed.on('snapshot', async () => {
  say({ snapshot: feed.elements.size, cursor: feed.cursor })
  if (wrote) return
  wrote = true
  const outbox = createOutbox(rf, { storage: memoryStorage() })
  await outbox.start()
  const entry = await outbox.enqueue(room, { op: 'create', id: 'from-node', kind: 'note', data: { name: 'hello from node' }, base: 0 })
  const result = await outbox.settled(entry.key)
  const page = await rf.historyPage(room, { after: 0, limit: 100 })
  say({ wrote: result.outcome, history: page.events.map((e) => e.element?.id) })
})
`,

  // The ~30-line Vue app: a room's elements, live, through @roomfeed/pinia.
  'src/main.ts': `import { createApp, defineComponent, h } from 'vue'
import { createPinia } from 'pinia'
import { connect, type RoomFeedError } from '@roomfeed/client'
import { defineRoomStore } from '@roomfeed/pinia'

const room = new URLSearchParams(location.search).get('room') ?? 'w1'
const rf = connect({ client: 'vue-app' }) // the page's own origin
const useRoom = defineRoomStore('room', { connection: rf })

const App = defineComponent({
  setup() {
    const store = useRoom(room)
    const failure = (err: RoomFeedError | null): string => (err ? \`\${err.status} \${err.code}\` : '')
    return () =>
      h('main', { 'data-status': store.status }, [
        h('h1', \`\${room}: \${store.status}\`),
        h('p', { class: 'error' }, failure(store.error)),
        h(
          'ul',
          Object.values(store.elements).map((el) =>
            h('li', { key: el.id, 'data-id': el.id }, String(el.data.name ?? el.id)),
          ),
        ),
      ])
  },
})

createApp(App).use(createPinia()).mount('#app')
`,
  'index.html': `<!doctype html>
<html><head><meta charset="utf-8"><title>stranger</title></head>
<body><div id="app"></div><script type="module" src="/src/main.ts"></script></body></html>
`,
  'tsconfig.json': JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'ESNext',
        moduleResolution: 'Bundler',
        lib: ['ES2022', 'DOM', 'DOM.Iterable'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: [],
      },
      include: ['src/main.ts'],
    },
    null,
    2,
  ),
  'tsconfig.node.json': JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        allowJs: true,
        checkJs: true,
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
      },
      include: ['tail.mjs'],
    },
    null,
    2,
  ),
}

/** Start the Node.js script; lines() answers the JSON lines printed so far. */
function startScript(dir, base, room) {
  const proc = spawn(process.execPath, ['tail.mjs', base, room], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout.on('data', (b) => (out += b))
  proc.stderr.on('data', (b) => (err += b))
  return {
    proc,
    lines: () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    output: () => `${out}${err}`,
    stop: () => proc.kill('SIGTERM'),
  }
}

async function main() {
  const dir = await mkdtemp(path.join(tmpdir(), 'roomfeed-stranger-'))
  assert.ok(path.relative(WEB_DIR, dir).startsWith('..'), 'the project must be outside web/')
  const cleanups = []
  try {
    step(`npm pack @roomfeed/client and @roomfeed/pinia into ${dir}/packs`)
    const packs = path.join(dir, 'packs')
    await mkdir(packs)
    await sh(npm, ['pack', '--workspace', 'packages/client', '--workspace', 'packages/pinia', '--pack-destination', packs], WEB_DIR)
    const tarballs = (await readdir(packs)).filter((f) => f.endsWith('.tgz')).sort()
    assert.deepEqual(tarballs, ['roomfeed-client-0.1.0.tgz', 'roomfeed-pinia-0.1.0.tgz'])
    const { stdout: listing } = await sh('tar', ['tzf', path.join(packs, tarballs[0])], dir)
    for (const f of ['package/src/index.js', 'package/dist/index.d.ts', 'package/README.md', 'package/CHANGELOG.md']) {
      assert.ok(listing.includes(f), `the client tarball has ${f}`)
    }
    assert.ok(!listing.includes('.test.js') && !listing.includes('fakes.js'), 'no tests in the tarball')

    step('a fresh project: npm install the tarballs, vue, pinia, vite, typescript, eventsource, socket.io-client')
    const app = path.join(dir, 'app')
    await mkdir(path.join(app, 'src'), { recursive: true })
    for (const [name, text] of Object.entries(FILES)) await writeFile(path.join(app, name), text)
    await sh(
      npm,
      [
        'install',
        '--prefer-offline',
        ...tarballs.map((t) => path.join(packs, t)),
        'vue@^3.5',
        'pinia@^4.1',
        'vite@^8',
        'typescript@~5.9.3',
        'eventsource@^4',
        'socket.io-client@^4', // the guide's "before" client (docs/from-socketio.md)
        '@types/node@^20',
      ],
      app,
    )

    step('tsc --noEmit: the Vue app and the Node.js script')
    await sh(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.json'], app)
    await sh(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.node.json'], app)

    step('vite build of the Vue app')
    await sh(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], app)

    step('a real roomfeed server (embedded default) serving the Vue app')
    // $ROOMFEED_BIN, else built here (the editor's dist/ is not needed).
    let bin = process.env.ROOMFEED_BIN
    if (!bin) {
      bin = path.join(dir, 'roomfeed')
      await sh('go', ['build', '-o', bin, './cmd/roomfeed'], REPO_DIR)
    }
    const server = await startServer({ bin, db: path.join(dir, 'rf.db'), args: ['--web-dir', path.join(app, 'dist')] })
    cleanups.push(() => server.stop())
    const room = 'stranger'
    const api = roomApi(server.url, room)
    await api.put('seed', 'note', { name: 'already there' })

    step('the Node.js script tails the room and writes to it')
    const script = startScript(app, server.url, room)
    cleanups.push(() => script.stop())
    const what = (fn, label) => waitFor(fn, { timeoutMs: 30000, what: `${label}; script output:\n${script.output()}` })
    await what(() => script.lines().find((l) => l.snapshot === 1), 'the snapshot (one element)')
    const wrote = await what(() => script.lines().find((l) => l.wrote), 'its write')
    assert.equal(wrote.wrote, 'ack')
    assert.deepEqual(wrote.history, ['seed', 'from-node'])
    const snap = await api.snapshot()
    assert.deepEqual(snap.elements.map((e) => e.id).sort(), ['from-node', 'seed'])
    await api.put('from-curl', 'note', { name: 'written by another client' })
    await what(() => script.lines().find((l) => l.change === 'from-curl' && l.name === 'written by another client'), 'the live change')

    step('headless Chromium: the Vue app shows the room, then changes live')
    const browser = await launchBrowser()
    cleanups.push(() => browser.close())
    const page = await browser.newPage()
    await page.goto(`${server.url}/?room=${room}`)
    const names = () => page.$$eval('li', (lis) => lis.map((li) => li.textContent).sort())
    await waitFor(async () => (await page.getAttribute('main', 'data-status')) === 'live', { timeoutMs: 20000, what: 'the app live' })
    await waitFor(async () => (await names()).length === 3, { timeoutMs: 20000, what: 'three elements in the app' })
    await api.put('live-1', 'note', { name: 'appears without a reload' })
    await api.patch('seed', { name: 'renamed live' })
    const want = ['appears without a reload', 'hello from node', 'renamed live', 'written by another client']
    await waitFor(async () => JSON.stringify(await names()) === JSON.stringify(want), { timeoutMs: 20000, what: `the app to show ${want}` })
    await api.del('from-node')
    await waitFor(async () => !(await names()).includes('hello from node'), { timeoutMs: 20000, what: 'a delete, live' })
    await what(() => script.lines().find((l) => l.change === 'from-node' && l.deleted), 'the script to see the delete')
    step('docs/from-socketio.md: every fenced snippet, run (web/scripts/guide-snippets.mjs)')
    const { blocks, ran } = await runGuide({ app, dir, bin, server, browser })
    step(`  ${ran.length} of ${blocks.length} blocks of the guide run`)
    step('ok: packed, installed, type-checked, and run against a real server')
  } finally {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {})
    if (process.env.KEEP_STRANGER) console.log(`# kept ${dir}`)
    else await rm(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})

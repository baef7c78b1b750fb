// The size of @roomfeed/client as an application pays for it: tiny entries
// bundled with Vite (tree-shaken, minified), then gzipped.
//   node scripts/size.mjs          prints a table
//   node scripts/size.mjs --check  fails when the core is over its budget
import { build } from 'vite'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'

const BUDGET = 15 * 1024
const entries = {
  core: `import { connect } from '@roomfeed/client'
const rf = connect({ baseUrl: 'https://feeds.example' })
rf.follow('w1').on('change', (c) => console.log(c))
rf.historyPage('w1', { after: 0 }).then(console.log)`,
  'core + outbox': `import { connect, createOutbox } from '@roomfeed/client'
const rf = connect({ baseUrl: 'https://feeds.example' })
rf.follow('w1').on('change', (c) => console.log(c))
const outbox = createOutbox(rf)
outbox.start().then(() => outbox.enqueue('w1', { op: 'patch', id: 'c1', patch: { hp: 9 } }))`,
  everything: `export * from '@roomfeed/client'`,
}

// Inside web/ so that '@roomfeed/client' resolves to the workspace package.
await mkdir('node_modules/.cache', { recursive: true })
const dir = await mkdtemp(join(process.cwd(), 'node_modules/.cache/roomfeed-size-'))
const rows = []
try {
  for (const [name, code] of Object.entries(entries)) {
    const file = join(dir, `${name.replace(/\W+/g, '-')}.js`)
    await writeFile(file, code)
    const out = await build({
      configFile: false,
      logLevel: 'silent',
      root: process.cwd(),
      build: {
        write: false,
        minify: true,
        lib: { entry: file, formats: ['es'], fileName: 'out' },
      },
    })
    const chunk = [out].flat()[0].output[0]
    const min = Buffer.byteLength(chunk.code)
    rows.push({ name, min, gzip: gzipSync(chunk.code, { level: 9 }).length })
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`
console.log('| entry | min | min+gzip |\n|---|---|---|')
for (const r of rows) console.log(`| ${r.name} | ${kib(r.min)} | ${kib(r.gzip)} |`)
const core = rows.find((r) => r.name === 'core')
if (process.argv.includes('--check') && core.gzip > BUDGET) {
  console.error(`core is ${kib(core.gzip)} min+gzip, over the ${kib(BUDGET)} budget`)
  process.exit(1)
}

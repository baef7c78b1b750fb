// The declarations a TypeScript user gets: built from the JSDoc as `npm pack`
// builds them, then a consumer (test/types-consumer.ts) importing every
// public type from the package root is type-checked with --strict.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..')
const tsc = join(pkg, '../../node_modules/typescript/bin/tsc')

describe('type declarations', () => {
  it('every public type is importable from the package root, and events are typed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'roomfeed-types-'))
    try {
      const mod = join(dir, 'node_modules/@roomfeed/client')
      mkdirSync(mod, { recursive: true })
      execFileSync(process.execPath, [tsc, '-p', join(pkg, 'tsconfig.json'), '--outDir', join(mod, 'dist')])
      writeFileSync(join(mod, 'package.json'), JSON.stringify({ name: '@roomfeed/client', type: 'module', exports: { '.': { types: './dist/index.d.ts' } } }))
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }))
      copyFileSync(join(pkg, 'test/types-consumer.ts'), join(dir, 'main.ts'))
      const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2022,dom', join(dir, 'main.ts')]
      let out = ''
      try {
        execFileSync(process.execPath, [tsc, ...args], { cwd: dir, encoding: 'utf8' })
      } catch (err) {
        out = `${err.stdout}${err.stderr}`
      }
      expect(out).toBe('')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120000)
})

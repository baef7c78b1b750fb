// @vitest-environment jsdom
import { afterEach, describe, expect, it } from 'vitest'
import { appConfig, buildConfig, configTokenSource, loadConfig, setAppConfig } from './config.js'

function memoryStorage() {
  const m = new Map()
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)) }
}

function doc(meta = {}) {
  const d = document.implementation.createHTMLDocument('t')
  for (const [name, content] of Object.entries(meta)) {
    const el = d.createElement('meta')
    el.setAttribute('name', name)
    el.setAttribute('content', content)
    d.head.append(el)
  }
  return d
}

const json = (body, status = 200) => async () =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json; charset=utf-8' } })

afterEach(() => setAppConfig({}))

describe('run-time configuration', () => {
  it('build-time defaults come from VITE_*', () => {
    expect(buildConfig({ VITE_ROOMFEED_URL: 'http://a', VITE_ROOMFEED_TOKEN_ENDPOINT: '/t' })).toEqual({
      serverUrl: 'http://a',
      tokenEndpoint: '/t',
      token: '',
    })
    expect(buildConfig({})).toEqual({ serverUrl: '', tokenEndpoint: '', token: '' })
  })

  it('/config.json overrides the defaults, a <meta> tag overrides /config.json', async () => {
    const storage = memoryStorage()
    const served = json({ serverUrl: 'https://feeds.example', tokenEndpoint: 'https://app.example/token', other: 1 })
    let cfg = await loadConfig({ fetch: served, document: doc(), storage })
    expect(cfg).toMatchObject({ serverUrl: 'https://feeds.example', tokenEndpoint: 'https://app.example/token' })
    expect(appConfig()).toBe(cfg)
    cfg = await loadConfig({ fetch: served, document: doc({ 'roomfeed-server-url': 'https://meta.example' }), storage })
    expect(cfg).toMatchObject({ serverUrl: 'https://meta.example', tokenEndpoint: 'https://app.example/token' })
  })

  it('offline: the last /config.json saved; no config anywhere: the defaults', async () => {
    const storage = memoryStorage()
    await loadConfig({ fetch: json({ serverUrl: 'https://feeds.example' }), document: doc(), storage })
    const offline = async () => {
      throw new TypeError('Failed to fetch')
    }
    expect((await loadConfig({ fetch: offline, document: doc(), storage })).serverUrl).toBe('https://feeds.example')
    expect((await loadConfig({ fetch: offline, document: doc(), storage: memoryStorage() })).serverUrl).toBe('')
    // A static host without /config.json answers 404 or its index page: ignored.
    const html = async () => new Response('<!doctype html>', { status: 200, headers: { 'Content-Type': 'text/html' } })
    expect((await loadConfig({ fetch: html, document: doc(), storage: memoryStorage() })).serverUrl).toBe('')
    expect((await loadConfig({ fetch: json({}, 404), document: doc(), storage: memoryStorage() })).serverUrl).toBe('')
  })

  it('the token source follows the configuration', async () => {
    expect(await configTokenSource({ token: 'fixed' }).get()).toBe('fixed')
    expect(await configTokenSource({}).get()).toBeNull()
    const calls = []
    const cfg = { tokenEndpoint: 'https://app.example/token' }
    const orig = globalThis.fetch
    globalThis.fetch = async (url) => {
      calls.push(url)
      return new Response('{"token":"tok"}', { status: 200 })
    }
    try {
      expect(await configTokenSource(cfg).get()).toBe('tok')
    } finally {
      globalThis.fetch = orig
    }
    expect(calls).toEqual(['https://app.example/token'])
  })
})

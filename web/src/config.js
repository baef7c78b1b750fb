// Where the editor's server is and where its tokens come from. Build-time
// defaults come from VITE_ROOMFEED_URL, VITE_ROOMFEED_TOKEN and
// VITE_ROOMFEED_TOKEN_ENDPOINT; loadConfig() (main.js, before mounting)
// overrides them at run time.

import { createTokenSource } from '@roomfeed/client'

function buildEnv() {
  try {
    return import.meta.env ?? {}
  } catch {
    return {}
  }
}

/** The build-time defaults. */
export function buildConfig(env = buildEnv()) {
  return {
    serverUrl: env.VITE_ROOMFEED_URL || '',
    tokenEndpoint: env.VITE_ROOMFEED_TOKEN_ENDPOINT || '',
    token: env.VITE_ROOMFEED_TOKEN || '',
  }
}

let current = buildConfig()

/** The configuration in force: { serverUrl, tokenEndpoint, token }. */
export function appConfig() {
  return current
}

/** Replace the configuration in force (loadConfig; tests); unset fields keep the build-time defaults. */
export function setAppConfig(next) {
  current = { ...buildConfig(), ...next }
  return current
}

/** The token source of a configuration: a fixed token, an endpoint, or none. */
export function configTokenSource(cfg = current) {
  return createTokenSource({ token: cfg.token || undefined, endpoint: cfg.tokenEndpoint || undefined })
}

const SAVED_KEY = 'roomfeed.config'

function metaContent(doc, name) {
  const v = doc?.querySelector?.(`meta[name="${name}"]`)?.getAttribute('content')
  return v ? v.trim() : ''
}

function pick(obj) {
  const out = {}
  for (const k of ['serverUrl', 'tokenEndpoint']) if (typeof obj?.[k] === 'string' && obj[k]) out[k] = obj[k]
  return out
}

/**
 * Read the run-time configuration, in increasing order of precedence: the
 * build-time defaults, GET /config.json of the page's origin (served by
 * roomfeed from --web-server-url and --web-token-endpoint; kept in
 * localStorage for a page opened offline), then <meta name="roomfeed-server-url">
 * and <meta name="roomfeed-token-endpoint"> in the page. Never throws.
 */
export async function loadConfig({
  fetch = globalThis.fetch?.bind(globalThis),
  document: doc = globalThis.document,
  storage = globalThis.localStorage,
  timeoutMs = 3000,
} = {}) {
  let served = null
  try {
    const ctl = new AbortController()
    const timer = setTimeout(() => ctl.abort(), timeoutMs)
    const res = await fetch('/config.json', { cache: 'no-store', headers: { Accept: 'application/json' }, signal: ctl.signal })
    clearTimeout(timer)
    if (res.ok && (res.headers.get('Content-Type') ?? '').includes('json')) {
      served = pick(await res.json())
      storage?.setItem(SAVED_KEY, JSON.stringify(served))
    }
  } catch {
    try {
      served = pick(JSON.parse(storage?.getItem(SAVED_KEY) ?? 'null'))
    } catch {
      served = null
    }
  }
  const meta = pick({ serverUrl: metaContent(doc, 'roomfeed-server-url'), tokenEndpoint: metaContent(doc, 'roomfeed-token-endpoint') })
  return setAppConfig({ ...(served ?? {}), ...meta })
}

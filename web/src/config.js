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

/** Replace the configuration in force (loadConfig; tests). */
export function setAppConfig(next) {
  current = { ...buildConfig(), ...next }
  return current
}

/** The token source of a configuration: a fixed token, an endpoint, or none. */
export function configTokenSource(cfg = current) {
  return createTokenSource({ token: cfg.token || undefined, endpoint: cfg.tokenEndpoint || undefined })
}

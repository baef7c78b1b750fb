import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { RoomFeed } from './roomfeed.js'
import { createTokenSource, tokenExpiry, toTokenSource } from './token.js'
import { FakeEventSource, FakeServer, flush } from '../test/fakes.js'

/** An unsigned JWT-shaped token with the given exp (seconds); the client never verifies. */
function jwt(exp, sub = 'alice') {
  const b64 = (o) => btoa(JSON.stringify(o)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  return `${b64({ alg: 'HS256' })}.${b64({ sub, exp })}.sig`
}

function tokenParam(es) {
  return new URL(es.url, 'http://x').searchParams.get('access_token')
}

/** A token endpoint handing out t1, t2, ... each valid for `ttl` seconds. */
function tokenEndpoint({ ttl = 3600, now = () => Date.now() } = {}) {
  const ep = { calls: 0, issued: [] }
  ep.fetch = vi.fn(async (url, init) => {
    ep.calls += 1
    expect(url).toBe('/auth/token')
    expect(init.credentials).toBe('include')
    const tok = jwt(Math.floor(now() / 1000) + ttl, `user${ep.calls}`)
    ep.issued.push(tok)
    return new Response(JSON.stringify({ token: tok }), { status: 200 })
  })
  return ep
}

beforeEach(() => {
  FakeEventSource.reset()
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
})

afterEach(() => {
  vi.useRealTimers()
})

describe('token sources', () => {
  it('reads exp from a JWT and tolerates junk', () => {
    expect(tokenExpiry(jwt(1700000000))).toBe(1700000000 * 1000)
    expect(tokenExpiry('nope')).toBeNull()
    expect(tokenExpiry(undefined)).toBeNull()
  })

  it('a fixed token, a function, and none', async () => {
    expect(await createTokenSource({ token: 'abc' }).get()).toBe('abc')
    expect(await createTokenSource({}).get()).toBeNull()
    expect(await toTokenSource(null).get()).toBeNull()
    expect(await toTokenSource('xyz').refresh()).toBe('xyz')
    expect(await toTokenSource(() => 'fn').get()).toBe('fn')
    expect(await toTokenSource(undefined).get()).toBeNull()
  })

  it('fetches from the endpoint once, and again shortly before expiry', async () => {
    let now = 1_000_000_000_000
    const ep = tokenEndpoint({ ttl: 120, now: () => now })
    const src = createTokenSource({ endpoint: '/auth/token', fetch: ep.fetch, margin: 30000, now: () => now })
    const [a, b] = await Promise.all([src.get(), src.get()])
    expect(a).toBe(b)
    expect(ep.calls).toBe(1)
    now += 60_000
    expect(await src.get()).toBe(a)
    now += 40_000 // 20 s left: inside the margin
    const c = await src.get()
    expect(c).not.toBe(a)
    expect(ep.calls).toBe(2)
    expect(await src.refresh()).not.toBe(c)
  })

  it('accepts a text token and reports a failing endpoint', async () => {
    const text = createTokenSource({ endpoint: '/t', fetch: async () => new Response('tok.en.x\n') })
    expect(await text.get()).toBe('tok.en.x')
    const down = createTokenSource({ endpoint: '/t', fetch: async () => new Response('', { status: 403 }) })
    await expect(down.get()).rejects.toThrow(/403/)
  })
})

describe('RoomFeed with tokens', () => {
  function setup(token) {
    const server = new FakeServer('w1')
    server.upsert('c1', 'character', { name: 'Aria' })
    const valid = new Set()
    const fetch = async (url, init = {}) => {
      const auth = new Headers(init.headers).get('Authorization') ?? ''
      if (!valid.has(auth.replace(/^Bearer /, ''))) return server.error(401, 'token_expired')
      return server.fetch(url, init)
    }
    const feed = new RoomFeed({
      room: 'w1',
      baseUrl: 'http://rf.test',
      EventSource: FakeEventSource,
      fetch,
      token,
      window: null,
      isOnline: () => true,
      backoff: { min: 100, max: 1000 },
      random: () => 1,
    })
    return { server, feed, valid }
  }

  it('sends Bearer on fetch and access_token on every EventSource open', async () => {
    const ctx = setup('tok1')
    ctx.valid.add('tok1')
    await ctx.feed.start()
    await flush()
    const es = FakeEventSource.last
    expect(tokenParam(es)).toBe('tok1')
    expect(es.lastEventIdParam).toBe('1')
    expect(ctx.server.requests[0].headers.get('Authorization')).toBe('Bearer tok1')

    es.open()
    const ev = ctx.server.upsert('c1', 'character', { name: 'Bob' })
    es.emit(ev.type, ev)
    es.fail()
    await vi.advanceTimersByTimeAsync(200)
    await flush()
    const reopened = FakeEventSource.last
    expect(reopened).not.toBe(es)
    expect(tokenParam(reopened)).toBe('tok1')
    expect(reopened.lastEventIdParam).toBe('2')
    await ctx.feed.put('c2', { kind: 'item', data: {} })
    expect(ctx.server.requests.at(-1).headers.get('Authorization')).toBe('Bearer tok1')
    ctx.feed.stop()
  })

  it('on auth_expired: fetches a fresh token and resumes from its cursor', async () => {
    const ep = tokenEndpoint()
    const ctx = setup(createTokenSource({ endpoint: '/auth/token', fetch: ep.fetch }))
    const real = ep.fetch.getMockImplementation()
    ep.fetch.mockImplementation(async (...args) => {
      const res = await real(...args)
      ctx.valid.add(ep.issued.at(-1))
      return res
    })
    await ctx.feed.start()
    await flush()
    const es = FakeEventSource.last
    es.open()
    expect(tokenParam(es)).toBe(ep.issued[0])
    const ev = ctx.server.upsert('c1', 'character', { name: 'Bob' })
    es.emit(ev.type, ev)

    es.emit('auth_expired', { reason: 'token_expired' })
    await flush()
    const reopened = FakeEventSource.last
    expect(reopened).not.toBe(es)
    expect(es.closed).toBe(true)
    expect(ep.calls).toBe(2)
    expect(tokenParam(reopened)).toBe(ep.issued[1])
    expect(reopened.lastEventIdParam).toBe('2')
    ctx.feed.stop()
  })

  it('retries a 401 once with a refreshed token', async () => {
    const ep = tokenEndpoint()
    const ctx = setup(createTokenSource({ endpoint: '/auth/token', fetch: ep.fetch }))
    const real = ep.fetch.getMockImplementation()
    ep.fetch.mockImplementation(async (...args) => {
      const res = await real(...args)
      if (ep.calls === 2) ctx.valid.add(ep.issued.at(-1)) // the first token is already revoked
      return res
    })
    await ctx.feed.start()
    await flush()
    expect(ep.calls).toBe(2)
    expect(ctx.feed.elements.get('c1').data.name).toBe('Aria')
    expect(tokenParam(FakeEventSource.last)).toBe(ep.issued[1])
    ctx.feed.stop()
  })
})

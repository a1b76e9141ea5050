// The HTTP status server: /metrics, /healthz, /readyz, and its refusals.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { Metrics } from '../../src/observability/metrics.js';
import { startStatusServer, type StatusServerOptions } from '../../src/observability/status-server.js';

const log = pino({ level: 'silent' });

function metrics(): Metrics {
  return new Metrics({
    queueCounts: async () => ({ waiting: 0, delayed: 0 }),
    held: () => 0,
    inTransit: () => 0,
    inbound: () => 0,
    outboundByBinding: () => new Map(),
    redisPing: async () => 1,
  });
}

async function withServer(over: Partial<StatusServerOptions>, run: (base: string) => Promise<void>): Promise<void> {
  const m = metrics();
  const server = await startStatusServer({
    listen: '127.0.0.1:0',
    registry: m.registry,
    health: async () => ({ ok: true, checks: { process: 'ok', redis: 'ok' } }),
    ready: () => true,
    log,
    ...over,
  });
  try {
    assert.notEqual(server.port, 0);
    assert.equal(server.host, '127.0.0.1');
    await run(`http://127.0.0.1:${server.port}`);
  } finally {
    // fetch keeps its connection alive: this also proves close() does not wait for it.
    await server.close();
    m.close();
  }
}

test('GET /metrics serves the registry in the Prometheus text format', { timeout: 10_000 }, async () => {
  await withServer({}, async (base) => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /^# TYPE impulse_messages_received_total counter$/m);
    assert.match(text, /^impulse_redis_up 1$/m);
  });
});

test('GET /healthz answers 200 when healthy and 503 with the failing check otherwise', { timeout: 10_000 }, async () => {
  let redis = 'ok';
  const health = async () => ({ ok: redis === 'ok', checks: { process: 'ok', redis } });
  await withServer({ health }, async (base) => {
    let res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok', checks: { process: 'ok', redis: 'ok' } });
    redis = 'unreachable: ECONNREFUSED';
    res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: 'fail', checks: { process: 'ok', redis: 'unreachable: ECONNREFUSED' } });
  });
});

test('a health check that throws answers 500, and the server keeps serving', { timeout: 10_000 }, async () => {
  const health = async (): Promise<never> => {
    throw new Error('bug');
  };
  await withServer({ health }, async (base) => {
    assert.equal((await fetch(`${base}/healthz`)).status, 500);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  });
});

test('GET /readyz follows ready()', { timeout: 10_000 }, async () => {
  let ready = false;
  await withServer({ ready: () => ready }, async (base) => {
    let res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: 'fail' });
    ready = true;
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok' });
  });
});

test('unknown paths answer 404 and other methods 405', { timeout: 10_000 }, async () => {
  await withServer({}, async (base) => {
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal((await fetch(`${base}/metrics/extra`)).status, 404);
    const res = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`${base}/metrics?name[]=x`)).status, 200, 'a query string does not change the route');
  });
});

test('startup rejects naming the address when the port is taken or the address is malformed', { timeout: 10_000 }, async () => {
  const taken: Server = createServer();
  await new Promise<void>((resolve) => taken.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const port = (taken.address() as { port: number }).port;
  const m = metrics();
  const options = { registry: m.registry, health: async () => ({ ok: true, checks: {} }), ready: () => true, log };
  try {
    await assert.rejects(startStatusServer({ ...options, listen: `127.0.0.1:${port}` }), (err: Error) => {
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
      return true;
    });
    await assert.rejects(startStatusServer({ ...options, listen: '127.0.0.1' }), /host:port or \[v6\]:port, got '127\.0\.0\.1'/);
  } finally {
    await new Promise((resolve) => taken.close(resolve));
    m.close();
  }
});

test('an IPv6 literal in brackets is accepted', { timeout: 10_000 }, async (t) => {
  const m = metrics();
  const options = { registry: m.registry, health: async () => ({ ok: true, checks: {} }), ready: () => true, log };
  let server;
  try {
    server = await startStatusServer({ ...options, listen: '[::1]:0' });
  } catch (err) {
    m.close();
    if ((err as Error).message.includes('EADDRNOTAVAIL')) return t.skip('no IPv6 loopback here');
    throw err;
  }
  try {
    assert.equal(server.host, '::1');
    assert.equal((await fetch(`http://[::1]:${server.port}/readyz`)).status, 200);
  } finally {
    await server.close();
    m.close();
  }
});

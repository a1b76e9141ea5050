// Unit tests of the hook registry and the plugin loader, asserting on the log records they write.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { CONN_ACTION_REQUEUE1, CONN_ERROR_CONNECT, CONN_ERROR_CONNECT_TIMEOUT } from '../../src/delivery/flags.js';
import { loadPlugins } from '../../src/hooks/plugins.js';
import { HOOK_NAMES, HookError, HookRegistry } from '../../src/hooks/registry.js';
import type { HookAddress, HookReadyQueue, HookDomain, HookMessage } from '../../src/hooks/signatures.js';

type LogRecord = Record<string, unknown> & { level: number; msg?: string };

function memoryLogger(): { log: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void records.push(JSON.parse(line) as LogRecord) });
  return { log, records };
}

const WARN = 40;
const INFO = 30;

const here = dirname(fileURLToPath(import.meta.url));
const examplePlugin = resolve(here, '../../src/plugins/count-connection-failures.js');
const recordingPlugin = resolve(here, '../fixtures/recording-plugin.js');

const addr: HookAddress = { address: '192.0.2.10', port: 25, host: 'mx1.example.com' };
const domain: HookDomain = { domain: 'example.com', consecutiveFailures: 3 };
const queue: HookReadyQueue = { binding: 'default', domain: 'example.com', bindAddress: undefined };
const msg: HookMessage = {
  qid: 'q1',
  sender: 'a@example.org',
  recipients: ['b@example.com'],
  headers: new Map([['subject', 'hi']]),
};

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'impulse-hooks-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('HOOK_NAMES lists every declared hook once', () => {
  assert.equal(new Set(HOOK_NAMES).size, HOOK_NAMES.length);
  assert.ok(HOOK_NAMES.includes('set_binding'));
  assert.ok(HOOK_NAMES.includes('log_client_connection_failure'));
  assert.ok(Object.isFrozen(HOOK_NAMES));
});

test('registerFirst runs before and registerLast after the handlers already registered; closure comes first', async () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  const seen: string[] = [];
  const h = (tag: string) => (closure: unknown, _msg: HookMessage, d: string) => {
    seen.push(`${tag}:${String(closure)}:${d}`);
    return { binding: tag };
  };
  hooks.registerLast('set_binding', h('b'), { plugin: 'p', closure: 'cb' });
  hooks.registerFirst('set_binding', h('a'), { plugin: 'p', closure: 'ca' });
  hooks.registerLast('set_binding', h('c'), { plugin: 'p', closure: 'cc' });
  hooks.registerFirst('set_binding', h('z'), { plugin: 'p' });
  const results = await hooks.call('set_binding', msg, 'example.com');
  assert.deepEqual(seen, ['z:undefined:example.com', 'a:ca:example.com', 'b:cb:example.com', 'c:cc:example.com']);
  assert.deepEqual(results, [{ binding: 'z' }, { binding: 'a' }, { binding: 'b' }, { binding: 'c' }]);
});

test('has() tells whether a hook has handlers; call() on an empty hook resolves to []', async () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  assert.equal(hooks.has('log_delivery'), false);
  assert.deepEqual(await hooks.call('log_delivery', msg, 'example.com', 1, '250 ok'), []);
  hooks.registerLast('log_delivery', () => {}, { plugin: 'p' });
  assert.equal(hooks.has('log_delivery'), true);
  assert.equal(hooks.has('log_permanent_failure'), false);
});

test('call() waits for asynchronous handlers one at a time and keeps handler order', async () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  const events: string[] = [];
  hooks.registerLast('set_binding', async () => {
    events.push('slow start');
    await new Promise((r) => setImmediate(r));
    events.push('slow end');
    return { group: 'g' };
  }, { plugin: 'p' });
  hooks.registerLast('set_binding', () => {
    events.push('sync');
    return undefined;
  }, { plugin: 'p' });
  assert.deepEqual(await hooks.call('set_binding', msg, 'example.com'), [{ group: 'g' }, undefined]);
  assert.deepEqual(events, ['slow start', 'slow end', 'sync']);
});

test('synchronous handlers all run before call() returns its promise', () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  const seen: number[] = [];
  for (const n of [1, 2, 3]) hooks.registerLast('log_delivery', () => void seen.push(n), { plugin: 'p' });
  void hooks.call('log_delivery', msg, 'example.com', 1, '250 ok');
  assert.deepEqual(seen, [1, 2, 3]);
});

test('an unknown hook name is refused with HOOK_UNKNOWN', () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  const bogus = 'log_delivery_typo' as 'log_delivery';
  assert.throws(() => hooks.registerLast(bogus, () => {}, { plugin: 'p' }), (e: unknown) => e instanceof HookError && e.code === 'HOOK_UNKNOWN' && /log_delivery_typo/.test(e.message));
  assert.throws(() => hooks.registerFirst(bogus, () => {}, { plugin: 'p' }), { code: 'HOOK_UNKNOWN' });
  assert.throws(() => hooks.has(bogus), { code: 'HOOK_UNKNOWN' });
  assert.throws(() => hooks.registerLast('__proto__' as 'log_delivery', () => {}, { plugin: 'p' }), { code: 'HOOK_UNKNOWN' });
});

test('registration after seal() is refused with HOOK_REGISTRATION_CLOSED; calls still work', async () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  hooks.registerLast('set_binding', () => ({ binding: 'x' }), { plugin: 'p' });
  hooks.seal();
  assert.throws(() => hooks.registerLast('set_binding', () => undefined, { plugin: 'p' }), (e: unknown) => e instanceof HookError && e.code === 'HOOK_REGISTRATION_CLOSED');
  assert.throws(() => hooks.registerFirst('log_delivery', () => {}, { plugin: 'p' }), { code: 'HOOK_REGISTRATION_CLOSED' });
  assert.deepEqual(await hooks.call('set_binding', msg, 'example.com'), [{ binding: 'x' }]);
});

test('bad registrations are refused: handler not a function, no plugin name, bad timeout', () => {
  const { log } = memoryLogger();
  const hooks = new HookRegistry({ log });
  assert.throws(() => hooks.registerLast('log_delivery', 'nope' as never, { plugin: 'p' }), { code: 'HOOK_BAD_HANDLER' });
  assert.throws(() => hooks.registerLast('log_delivery', () => {}, { plugin: '' }), { code: 'HOOK_BAD_OPTION' });
  assert.throws(() => hooks.registerLast('log_delivery', () => {}, { plugin: 'p', timeoutMs: 0 }), { code: 'HOOK_BAD_OPTION' });
  assert.throws(() => new HookRegistry({ log, defaultTimeoutMs: -1 }), { code: 'HOOK_BAD_OPTION' });
});

test('a throwing and a rejecting handler are logged with their plugin and do not stop later handlers', async () => {
  const { log, records } = memoryLogger();
  const hooks = new HookRegistry({ log });
  hooks.registerLast('set_binding', () => {
    throw new Error('sync boom');
  }, { plugin: 'thrower' });
  hooks.registerLast('set_binding', async () => {
    throw new Error('async boom');
  }, { plugin: 'rejecter' });
  hooks.registerLast('set_binding', () => ({ binding: 'survivor' }), { plugin: 'fine' });
  const results = await hooks.call('set_binding', msg, 'example.com');
  assert.deepEqual(results, [undefined, undefined, { binding: 'survivor' }]);
  const errors = records.filter((r) => r['event'] === 'hook_error');
  assert.equal(errors.length, 2);
  assert.deepEqual(errors.map((r) => [r.level, r['hook'], r['plugin'], (r['err'] as { message: string }).message]), [
    [WARN, 'set_binding', 'thrower', 'sync boom'],
    [WARN, 'set_binding', 'rejecter', 'async boom'],
  ]);
});

test('a handler that exceeds its time limit is logged as hook_timeout and call() goes on', async () => {
  const { log, records } = memoryLogger();
  const hooks = new HookRegistry({ log, defaultTimeoutMs: 60_000 });
  hooks.registerLast('log_delivery', () => new Promise<void>(() => {}), { plugin: 'stuck', timeoutMs: 50 });
  let laterRan = false;
  hooks.registerLast('log_delivery', () => {
    laterRan = true;
  }, { plugin: 'next' });
  const started = Date.now();
  assert.deepEqual(await hooks.call('log_delivery', msg, 'example.com', 1, '250 ok'), [undefined, undefined]);
  assert.ok(Date.now() - started < 5_000);
  assert.equal(laterRan, true);
  const timeouts = records.filter((r) => r['event'] === 'hook_timeout');
  assert.equal(timeouts.length, 1);
  assert.equal(timeouts[0]!.level, WARN);
  assert.equal(timeouts[0]!['hook'], 'log_delivery');
  assert.equal(timeouts[0]!['plugin'], 'stuck');
  assert.match((timeouts[0]!['err'] as { message: string }).message, /50 ms/);
});

test('fire() does not wait, isolates failures, and idle() resolves once fired calls settle', async () => {
  const { log, records } = memoryLogger();
  const hooks = new HookRegistry({ log });
  hooks.fire('log_transient_failure', msg, 'example.com', 1, '451 later', 70);
  await hooks.idle();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const done: string[] = [];
  hooks.registerLast('log_transient_failure', async (_c, m, d, _now, note, bounceClass) => {
    await gate;
    done.push(`${m.qid} ${d} ${note} ${bounceClass}`);
  }, { plugin: 'waiter' });
  hooks.registerLast('log_transient_failure', () => Promise.reject(new Error('late boom')), { plugin: 'rejecter' });
  assert.equal(hooks.fire('log_transient_failure', msg, 'example.com', 1, '451 later', 70), undefined);
  assert.deepEqual(done, []);
  let idle = false;
  const idling = hooks.idle().then(() => (idle = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(idle, false);
  release();
  await idling;
  assert.deepEqual(done, ['q1 example.com 451 later 70']);
  assert.deepEqual(records.filter((r) => r['event'] === 'hook_error').map((r) => r['plugin']), ['rejecter']);
});

test('loadPlugins loads the example plugin, which counts connection failures per flag', async () => {
  const { log, records } = memoryLogger();
  const hooks = new HookRegistry({ log });
  await loadPlugins([{ path: examplePlugin }], hooks, { log, baseDir: tmp });
  assert.deepEqual(records.filter((r) => r['event'] === 'plugin_loaded').map((r) => [r.level, r['plugin'], r['path']]), [
    [INFO, 'count-connection-failures', examplePlugin],
  ]);
  assert.equal(hooks.has('log_client_connection_failure'), true);
  await hooks.call('log_client_connection_failure', addr, CONN_ERROR_CONNECT | CONN_ACTION_REQUEUE1, domain, queue, 1);
  await hooks.call('log_client_connection_failure', null, CONN_ERROR_CONNECT_TIMEOUT, domain, queue, null);
  const counted = records.filter((r) => r['event'] === 'connection_failure_count');
  assert.equal(counted.length, 2);
  assert.deepEqual(
    counted.map(({ level, plugin, flags, domain: d, binding, counts }) => ({ level, plugin, flags, domain: d, binding, counts })),
    [
      { level: INFO, plugin: 'count-connection-failures', flags: ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1'], domain: 'example.com', binding: 'default', counts: { CONN_ERROR_CONNECT: 1, CONN_ACTION_REQUEUE1: 1 } },
      { level: INFO, plugin: 'count-connection-failures', flags: ['CONN_ERROR_CONNECT_TIMEOUT'], domain: 'example.com', binding: 'default', counts: { CONN_ERROR_CONNECT: 1, CONN_ACTION_REQUEUE1: 1, CONN_ERROR_CONNECT_TIMEOUT: 1 } },
    ],
  );
});

test('the example plugin logs every Nth failure with log_every and refuses bad options', async () => {
  const { log, records } = memoryLogger();
  const hooks = new HookRegistry({ log });
  await loadPlugins([{ path: examplePlugin, options: { log_every: 2 } }], hooks, { log, baseDir: tmp });
  for (let i = 0; i < 5; i++) await hooks.call('log_client_connection_failure', addr, CONN_ERROR_CONNECT, domain, queue, i);
  assert.deepEqual(records.filter((r) => r['event'] === 'connection_failure_count').map((r) => r['counts']), [
    { CONN_ERROR_CONNECT: 2 },
    { CONN_ERROR_CONNECT: 4 },
  ]);
  for (const options of [{ log_every: 0 }, { log_every: 1.5 }, { logEvery: 2 }, 'x']) {
    await assert.rejects(loadPlugins([{ path: examplePlugin, options }], new HookRegistry({ log }), { log, baseDir: tmp }), (e: Error) => e.message.includes(examplePlugin) && /register failed/.test(e.message));
  }
});

test('loadPlugins rejects a missing file, naming the resolved path', async () => {
  const { log } = memoryLogger();
  const missing = join(tmp, 'no-such-plugin.js');
  await assert.rejects(loadPlugins([{ path: 'no-such-plugin.js' }], new HookRegistry({ log }), { log, baseDir: tmp }), (e: Error) => e.message.includes(missing) && /cannot be loaded/.test(e.message));
});

test('loadPlugins rejects a module without register, naming its path', async () => {
  const { log } = memoryLogger();
  const file = join(tmp, 'no-register.mjs');
  await writeFile(file, 'export const hello = 1;\n');
  await assert.rejects(loadPlugins([{ path: file }], new HookRegistry({ log }), { log, baseDir: tmp }), (e: Error) => e.message.includes(file) && /register/.test(e.message));
});

test('loadPlugins resolves relative paths against baseDir, accepts a default export, honours an exported name, and binds the plugin name', async () => {
  const { log, records } = memoryLogger();
  await writeFile(join(tmp, 'default-export.mjs'), [
    'export default {',
    '  name: "renamed",',
    '  register(api) {',
    '    api.hooks.registerLast("log_delivery", (closure, msg, domain) => { api.log.info({ event: "seen", closure, domain, options: api.options }); throw new Error("oops"); }, { closure: 7 });',
    '  },',
    '};',
    '',
  ].join('\n'));
  await writeFile(join(tmp, 'named-export.mjs'), 'export async function register(api) { api.log.info({ event: "hello", name: api.name }); }\n');
  const hooks = new HookRegistry({ log });
  await loadPlugins([{ path: './default-export.mjs', options: { a: 1 } }, { path: 'named-export.mjs' }], hooks, { log, baseDir: tmp });
  assert.deepEqual(records.filter((r) => r['event'] === 'plugin_loaded').map((r) => [r['plugin'], r['path']]), [
    ['renamed', join(tmp, 'default-export.mjs')],
    ['named-export', join(tmp, 'named-export.mjs')],
  ]);
  assert.deepEqual(records.filter((r) => r['event'] === 'hello').map((r) => [r['plugin'], r['name']]), [['named-export', 'named-export']]);
  await hooks.call('log_delivery', msg, 'example.com', 1, '250 ok');
  const seen = records.find((r) => r['event'] === 'seen');
  assert.deepEqual(seen && [seen['plugin'], seen['closure'], seen['domain'], seen['options']], ['renamed', 7, 'example.com', { a: 1 }]);
  assert.equal(records.find((r) => r['event'] === 'hook_error')?.['plugin'], 'renamed');
});

test('loadPlugins rejects a plugin whose register throws, naming its path and the cause', async () => {
  const { log } = memoryLogger();
  const file = join(tmp, 'throws.mjs');
  await writeFile(file, 'export function register() { throw new Error("cannot start"); }\n');
  await assert.rejects(loadPlugins([{ path: file }], new HookRegistry({ log }), { log, baseDir: tmp }), (e: Error) => e.message.includes(file) && /cannot start/.test(e.message));
});

test('the recording fixture logs every hook with JSON-safe arguments and answers set_binding from its options', async () => {
  const { log, records } = memoryLogger();
  const hooks = new HookRegistry({ log });
  await loadPlugins([{ path: recordingPlugin, options: { set_binding: { 'example.com': { binding: 'b1' }, 'example.net': { group: 'g1' } } } }], hooks, { log, baseDir: tmp });
  for (const name of HOOK_NAMES) assert.equal(hooks.has(name), true, name);
  assert.deepEqual(await hooks.call('set_binding', msg, 'example.com'), [{ binding: 'b1' }]);
  assert.deepEqual(await hooks.call('set_binding', msg, 'example.net'), [{ group: 'g1' }]);
  assert.deepEqual(await hooks.call('set_binding', msg, 'example.org'), [undefined]);
  const cyclic: Record<string, unknown> & { addr: HookAddress } = { addr, domain: 'example.com', consecutiveFailures: 1 };
  cyclic['self'] = cyclic;
  await hooks.call('log_client_connection_failure', null, CONN_ERROR_CONNECT, cyclic as unknown as HookDomain, queue, null);
  const calls = records.filter((r) => r['event'] === 'hook_call');
  assert.equal(calls.length, 4);
  assert.equal(calls[0]!['plugin'], 'recording-plugin');
  assert.deepEqual(calls[0]!['args'], [{ qid: 'q1', sender: 'a@example.org', recipients: ['b@example.com'], headers: { subject: 'hi' } }, 'example.com']);
  assert.deepEqual(calls[3]!['args'], [
    null,
    CONN_ERROR_CONNECT,
    { addr: { address: '192.0.2.10', port: 25, host: 'mx1.example.com' }, domain: 'example.com', consecutiveFailures: 1, self: '[circular]' },
    { binding: 'default', domain: 'example.com', bindAddress: null },
    null,
  ]);
});

// The scheduler as a receiver sees it: connections that move on to sibling domains sharing an MX
// host, and a tarpitted domain with thousands queued that does not hold up mail to other domains.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Daemon, LogRecord } from '../helpers/daemon.js';
import type { Zone } from '../helpers/dns.js';
import type { SinkBehaviour } from '../helpers/sink.js';
import { makeMessage, sendMany } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const RECORDING_PLUGIN = fileURLToPath(new URL('../fixtures/recording-plugin.js', import.meta.url));

const SIBLINGS = Array.from({ length: 30 }, (_, i) => `d${i}.test`);
const SHARED_MX = 'mx.shared.test';
const SHARED_IP = '127.0.0.2';
const TARPIT_MS = 3000;

// Every sink delay is cancelled when the world closes, so no timer keeps the process alive.
const pauses = new Set<() => void>();
let released = false;

function pause(ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (released) return reject(new Error('test stopping'));
    const cancel = () => {
      clearTimeout(timer);
      reject(new Error('test stopping'));
    };
    const timer = setTimeout(() => {
      pauses.delete(cancel);
      resolve();
    }, ms);
    pauses.add(cancel);
  });
}

function releasePauses(): void {
  released = true;
  for (const cancel of pauses) cancel();
  pauses.clear();
}

/** Waits `ms` at one stage, accepts everything. */
const slowAt = (stage: 'mail' | 'data', ms: number): SinkBehaviour => async (ctx) => {
  if (ctx.stage === stage) await pause(ms);
  return undefined;
};

let world: World;
const daemons: Daemon[] = [];

async function startDaemon(overrides: Record<string, unknown> = {}): Promise<Daemon> {
  const d = await world.start(overrides);
  daemons.push(d);
  return d;
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (d.proc.exitCode === null && d.proc.signalCode === null) await d.stop();
}

before(async () => {
  // Thirty domains whose single MX is one host name: Momentum's sibling domains.
  const zone: Zone = {
    [SHARED_MX]: { a: [SHARED_IP] },
    ...mxZone({ 'slow.test': '127.0.0.3', 'fast.test': '127.0.0.4' }),
  };
  for (const d of SIBLINGS) zone[d] = { mx: [{ preference: 10, exchange: SHARED_MX }] };
  world = await buildWorld({
    zone,
    sinks: {
      shared: { host: SHARED_IP, behaviour: slowAt('data', 25) },
      slow: { host: '127.0.0.3', behaviour: slowAt('mail', TARPIT_MS) },
      fast: { host: '127.0.0.4' },
    },
    config: { shutdown_timeout: '2s' },
  });
});

after(async () => {
  // Daemons first: a tarpit released while a daemon still runs would answer its sessions at once.
  for (const d of daemons) await stopDaemon(d);
  releasePauses();
  await world?.close();
});

function messagesTo(recipients: string[]): Array<{ from: string; to: string[]; raw: string }> {
  return recipients.map((to) => ({ from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) }));
}

/**
 * 300 one-recipient messages round-robin over the sibling domains, injected over one session as an
 * upstream MTA relays a steady stream (each of the thirty domains gets mail again and again);
 * returns the sink connections the run took.
 */
async function siblingRun(tag: string, overrides: Record<string, unknown>): Promise<{ daemon: Daemon; connections: number }> {
  const sink = world.sinks.shared!;
  const recipients = Array.from({ length: 300 }, (_, i) => `${tag}${i}@${SIBLINGS[i % SIBLINGS.length]}`);
  const daemon = await startDaemon({ log_level: 'debug', plugins: [{ path: RECORDING_PLUGIN }], ...overrides });
  const before = sink.connections;
  await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messagesTo(recipients), connections: 1 });
  await sink.waitForRecipients(recipients);
  // Stop only once every job has settled, so none is retried (and counted again) by the next daemon.
  const wanted = new Set(recipients);
  await daemon.waitForLogs((r) => r.event === 'delivery' && wanted.has(r.recipients?.[0]), recipients.length);
  assert.equal(await daemon.stop(), 0, 'daemon exits cleanly on SIGTERM');
  for (const r of recipients) {
    const copies = sink.messages.filter((m) => m.rcptTo.includes(r)).length;
    assert.equal(copies, 1, `${r} received ${copies} copies`);
  }
  return { daemon, connections: sink.connections - before };
}

const isPremigrate = (r: LogRecord) => r.event === 'hook_call' && r.hook === 'premigrate_outbound_connection';

test('sibling domains sharing an MX host: migration delivers the same mail over far fewer connections', async (t) => {
  const without = await siblingRun('nomig', { migrate_connections_between_sibling_domains: false });
  const withMig = await siblingRun('mig', { migrate_connections_between_sibling_domains: true });
  const migrated = withMig.daemon.logs.filter((r) => r.event === 'connection_migrated').length;
  const numbers = `connections without migration ${without.connections}, with migration ${withMig.connections} (${migrated} connection_migrated records)`;
  t.diagnostic(numbers);
  assert.ok(without.connections >= SIBLINGS.length, `without migration each domain needs its own connection; ${numbers}`);
  assert.equal(without.daemon.logs.filter((r) => r.event === 'connection_migrated' || isPremigrate(r)).length, 0,
    'with migration off no connection moves');
  // How many connections the pool needs also follows its backlog, which depends on how fast this
  // machine injects against how fast the sink answers; what migration must always show is that
  // sibling mail rides connections other domains opened, so fewer are opened overall.
  assert.ok(withMig.connections < without.connections, `migration should need fewer connections; ${numbers}`);
  assert.ok(migrated >= SIBLINGS.length, `connections should move between siblings again and again; ${numbers}`);

  const logs = withMig.daemon.logs;
  const calls = logs
    .map((r, index): [LogRecord, number] => [r, index])
    .filter(([r]) => isPremigrate(r));
  assert.ok(calls.length >= 1, `premigrate_outbound_connection was never called; ${numbers}`);
  for (const [call, index] of calls) {
    const src = call.args[1]?.domain;
    const dest = call.args[2]?.domain;
    assert.ok(SIBLINGS.includes(src), `premigrate src ${JSON.stringify(src)} is one of the siblings`);
    assert.ok(SIBLINGS.includes(dest), `premigrate dest ${JSON.stringify(dest)} is one of the siblings`);
    assert.notEqual(src, dest, 'a connection migrates to a different domain');
    // Mail for the domain the connection moved to was delivered after the move.
    assert.ok(
      logs.slice(index + 1).some((r) => r.event === 'delivery' && r.domain === dest),
      `no delivery to ${dest} logged after the migration from ${src}`,
    );
  }
});

test('sibling domains with a backlog each share one pool of max_outbound_connections, taking turns on it', async (t) => {
  const sink = world.sinks.shared!;
  const domains = SIBLINGS.slice(0, 6);
  const recipients = Array.from({ length: 600 }, (_, i) => `pool${i}@${domains[i % domains.length]}`);
  const daemon = await startDaemon({ max_outbound_connections: 4, connection_allocation_aggressiveness: 'high', log_level: 'debug' });
  const firstConnection = sink.connectionLog.length;
  await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messagesTo(recipients), connections: 8 });
  await sink.waitForRecipients(recipients, 60_000);
  const used = sink.connectionLog.slice(firstConnection);
  const migrated = daemon.logs.filter((r) => r.event === 'connection_migrated').length;
  t.diagnostic(`600 messages to 6 sibling domains over ${used.length} connections, ${migrated} moves between them`);
  // Each domain alone would open up to 4 (24 in all). One more than the pool's 4 allows for a
  // domain that waited a full second for a turn and opened its own.
  assert.ok(used.length <= 5, `the pool kept to max_outbound_connections: ${used.length} connections`);
  assert.ok(migrated >= domains.length, `the connections took turns between the domains: ${migrated} moves`);
  await stopDaemon(daemon);
});

test('a tarpitted domain with thousands queued does not hold up mail to another domain', async (t) => {
  const slow = world.sinks.slow!;
  const fast = world.sinks.fast!;
  // A window of 1000 (max_ready's default too): the 3000 queued are three times what the daemon
  // holds in memory, so neither the slow domain's active queue nor the window may fill up for good.
  const daemon = await startDaemon({ max_active_messages: 1000 });
  const started = Date.now();
  const slowRecipients = Array.from({ length: 3000 }, (_, i) => `t${i}@slow.test`);
  await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messagesTo(slowRecipients), connections: 8, timeoutMs: 60_000 });
  const injectedSlow = Date.now();
  // The tarpit is holding sessions: every one of them waits TARPIT_MS at MAIL FROM.
  await slow.waitForConnections(8, 10_000);

  const fastRecipients = Array.from({ length: 5 }, (_, i) => `f${i}@fast.test`);
  const t0 = Date.now();
  await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messagesTo(fastRecipients), connections: 1 });
  const arrived = await fast.waitForRecipients(fastRecipients, 10_000);
  const latency = Math.max(...arrived.map((m) => m.receivedAt)) - t0;
  const slowDone = slow.messages.length;
  t.diagnostic(
    `3000 slow messages injected in ${injectedSlow - started} ms; 5 fast messages delivered ${latency} ms after injection began; ` +
    `slow sink had delivered ${slowDone}/3000 over ${slow.connections} connection(s)`,
  );
  assert.ok(slowDone < 3000 / 10, `the tarpitted domain delivered only a small fraction, got ${slowDone}/3000`);
  await daemon.waitForLogs((r) => r.event === 'delivery' && r.domain === 'fast.test', fastRecipients.length);
  assert.equal(daemon.logs.filter((r) => r.event === 'transient_failure' && r.domain === 'fast.test').length, 0);
  const stopAt = Date.now();
  await stopDaemon(daemon);
  t.diagnostic(`daemon stopped ${Date.now() - stopAt} ms after SIGTERM with the tarpit still holding sessions`);
});

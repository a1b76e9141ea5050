// W3: one tarpitted destination domain with a large backlog. Measures whether mail to another
// domain is slowed while the backlog sits in the queue, and what the parked backlog costs
// (daemon RSS, Redis commands/s, Redis memory).
//
//   npx tsc -p tsconfig.json && node bench/w3-tarpit.mjs --n 20000
//
// Options: --n <messages to the tarpit> (20000), --tarpit-ms (5000), --settle-s (10),
//          --window-s (30), --every-s (2), --sessions (8).
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { buildWorld, mxZone } from '../dist/test/e2e/world.js';
import { startDaemon } from '../dist/test/helpers/daemon.js';
import { makeMessage, sendMany } from '../dist/test/helpers/smtp-client.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '20000' },
    'tarpit-ms': { type: 'string', default: '5000' },
    'settle-s': { type: 'string', default: '10' },
    'window-s': { type: 'string', default: '30' },
    'every-s': { type: 'string', default: '2' },
    sessions: { type: 'string', default: '8' },
  },
});
const N = Number(values.n);
const TARPIT_MS = Number(values['tarpit-ms']);
const SETTLE_MS = Number(values['settle-s']) * 1000;
const WINDOW_MS = Number(values['window-s']) * 1000;
const EVERY_MS = Number(values['every-s']) * 1000;
const SESSIONS = Number(values.sessions);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`[w3 ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// Tarpit delays are cancellable, so nothing keeps the process alive once the run is over.
const pauses = new Set();
let released = false;
function pause(ms) {
  return new Promise((resolve, reject) => {
    if (released) return reject(new Error('bench stopping'));
    const cancel = () => {
      clearTimeout(timer);
      reject(new Error('bench stopping'));
    };
    const timer = setTimeout(() => {
      pauses.delete(cancel);
      resolve();
    }, ms);
    pauses.add(cancel);
  });
}
function releasePauses() {
  released = true;
  for (const cancel of pauses) cancel();
  pauses.clear();
}
const tarpitAtMail = async (ctx) => {
  if (ctx.stage === 'mail') await pause(TARPIT_MS);
  return undefined;
};

// At log_level 'warn' the daemon's info-level 'ready' record is not printed, so readiness is the
// intake port accepting connections (the intake starts listening just before 'ready').
async function waitForPort(host, port, proc, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error('daemon exited during startup');
    const ok = await new Promise((resolve) => {
      const s = connect({ host, port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`intake ${host}:${port} not listening after ${timeoutMs} ms`);
    await sleep(200);
  }
}

function rssMb(pid) {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function infoField(info, field) {
  const m = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  return m ? m[1].trim() : undefined;
}

async function redisSample(redis) {
  const [stats, memory] = await Promise.all([redis.info('stats'), redis.info('memory')]);
  return {
    at: Date.now(),
    commands: Number(infoField(stats, 'total_commands_processed')),
    usedMemory: infoField(memory, 'used_memory_human'),
  };
}

async function queueCounts(redis) {
  const p = 'impulse:delivery';
  const [delayed, wait, active, prioritized] = await Promise.all([
    redis.zcard(`${p}:delayed`),
    redis.llen(`${p}:wait`),
    redis.llen(`${p}:active`),
    redis.zcard(`${p}:prioritized`),
  ]);
  return { delayed, wait, active, prioritized };
}

const percentile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];

function messagesTo(recipients) {
  return recipients.map((to) => ({ from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) }));
}

const world = await buildWorld({
  zone: mxZone({ 'slow.test': '127.0.0.3', 'fast.test': '127.0.0.4' }),
  sinks: {
    slow: { host: '127.0.0.3', behaviour: tarpitAtMail },
    fast: { host: '127.0.0.4' },
  },
  config: { shutdown_timeout: '2s' },
});

let daemon;
let redis;
let exitCode = 0;
try {
  // world.start() would wait for the 'ready' record; start the same daemon without that wait.
  daemon = await startDaemon({ ...world.config, log_level: 'warn' }, { dir: world.dir, waitReady: false });
  await waitForPort('127.0.0.1', world.intakePort, daemon.proc);
  const pid = daemon.proc.pid;
  redis = new Redis({ path: join(world.config.redis.dir, 'redis.sock'), maxRetriesPerRequest: null });
  log(`daemon ${pid} ready; injecting ${N} messages to slow.test over ${SESSIONS} sessions`);

  const slowMessages = messagesTo(Array.from({ length: N }, (_, i) => `t${i}@slow.test`));
  const injStart = Date.now();
  await sendMany({ host: '127.0.0.1', port: world.intakePort, messages: slowMessages, connections: SESSIONS, timeoutMs: 300_000 });
  const injMs = Date.now() - injStart;
  const injRate = N / (injMs / 1000);
  log(`injected ${N} in ${injMs} ms (${injRate.toFixed(0)} msg/s); rss ${rssMb(pid).toFixed(0)} MB; settling ${SETTLE_MS / 1000} s`);
  await sleep(SETTLE_MS);

  const fast = world.sinks.fast;
  const slow = world.sinks.slow;
  const before = await redisSample(redis);
  const rssBefore = rssMb(pid);
  const countsBefore = await queueCounts(redis);
  log(`window start: rss ${rssBefore.toFixed(0)} MB, redis ${before.usedMemory}, queue ${JSON.stringify(countsBefore)}`);

  const latencies = [];
  const pending = [];
  const windowStart = Date.now();
  for (let i = 0; Date.now() - windowStart < WINDOW_MS; i++) {
    const to = `f${i}@fast.test`;
    const t0 = Date.now();
    pending.push(
      sendMany({ host: '127.0.0.1', port: world.intakePort, messages: messagesTo([to]), connections: 1, timeoutMs: 30_000 })
        .then(() => fast.waitForRecipients([to], 60_000))
        .then(([m]) => latencies.push(m.receivedAt - t0)),
    );
    await sleep(Math.max(0, windowStart + (i + 1) * EVERY_MS - Date.now()));
  }
  const after = await redisSample(redis);
  const rssAfter = rssMb(pid);
  const countsAfter = await queueCounts(redis);
  const redisCmdsPerS = (after.commands - before.commands) / ((after.at - before.at) / 1000);
  log(`window end: rss ${rssAfter.toFixed(0)} MB, redis ${after.usedMemory}, queue ${JSON.stringify(countsAfter)}`);
  await Promise.all(pending);

  latencies.sort((a, b) => a - b);
  const p50 = percentile(latencies, 0.5);
  const max = latencies[latencies.length - 1];
  log(`fast latencies (ms): ${latencies.join(' ')}`);
  log(`slow sink: ${slow.messages.length} delivered over ${slow.connections} connection(s)`);

  console.log('| N | injection msg/s | fast latency p50 / max (ms) | daemon RSS MB (start / end of window) | Redis cmds/s (window) | Redis used memory | delayed set (start / end) |');
  console.log('|---|---|---|---|---|---|---|');
  console.log(
    `| ${N} | ${injRate.toFixed(0)} | ${p50} / ${max} (n=${latencies.length}) | ${rssBefore.toFixed(0)} / ${rssAfter.toFixed(0)} | ` +
    `${redisCmdsPerS.toFixed(0)} | ${after.usedMemory} | ${countsBefore.delayed} / ${countsAfter.delayed} |`,
  );
  const events = {};
  for (const r of daemon.logs) events[r.event ?? 'other'] = (events[r.event ?? 'other'] ?? 0) + 1;
  log(`daemon warn+ log records by event: ${JSON.stringify(events)}`);
  for (const ev of Object.keys(events)) log(`first ${ev}: ${JSON.stringify(daemon.logs.find((r) => (r.event ?? 'other') === ev)).slice(0, 400)}`);
  console.log(`\nqueue at window end: ${JSON.stringify(countsAfter)}; slow sink delivered ${slow.messages.length}`);
} catch (err) {
  exitCode = 1;
  console.error(err);
} finally {
  await redis?.quit().catch(() => {});
  const stopAt = Date.now();
  // Daemon first: a tarpit released while the daemon runs would answer its sessions at once.
  if (daemon && daemon.proc.exitCode === null && daemon.proc.signalCode === null) {
    const code = await daemon.stop().catch((e) => (console.error(e), null));
    log(`daemon stopped with code ${code} in ${Date.now() - stopAt} ms`);
  }
  releasePauses();
  await world.close();
}
process.exit(exitCode);

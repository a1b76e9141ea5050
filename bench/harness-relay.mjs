// Impulse as the relay of the shared harness (../shared/bench/run-cmd.sh sets RELAY_CMD to this):
// the same injector, sink and CPU monitor that measure Postfix measure us. Usage:
//   RELAY_CMD='node bench/harness-relay.mjs [--nodes N] [--config JSON]' bash run-cmd.sh
// The harness exports BENCH_RELAY_PORT, BENCH_SINK_HOSTS and BENCH_SINK_PORT, and DOMAINS when
// it was set. Domain dK.test is routed to the K-th sink address modulo their count, as
// run-postfix.sh's transport_maps routes it. A DNS server on loopback answers every question
// with nothing, so the daemon's MTA-STS lookups (on by default) find no policy without waiting.
// The daemon runs as `npm start` runs it, at log_level warn, on its embedded Redis; with
// `--nodes N` (N ≥ 2, Node.js 22.12 or later for SO_REUSEPORT) N daemons share one redis-server
// and the intake port, as impulse@.service runs them. The harness counts this process tree's
// CPU: the daemons, their Redis, and this process with its DNS server. SIGTERM stops them all.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { CLI_PATH, SHIPPED_NODE_ARGS } from '../dist/test/helpers/daemon.js';
import { startDns } from '../dist/test/helpers/dns.js';
import { supportsReusePort } from '../dist/src/intake/reuse-port.js';
import { benchDaemonConfig } from './daemons.mjs';
import { startTopology } from './redis-topology.mjs';

const log = (msg) => process.stderr.write(`[harness-relay] ${msg}\n`);
const refuse = (msg) => {
  log(msg);
  process.exit(2);
};

let args;
try {
  args = parseArgs({ options: { nodes: { type: 'string', default: '1' }, config: { type: 'string', default: '{}' } } }).values;
} catch (err) {
  refuse(err.message);
}
const nodes = Number(args.nodes);
if (!Number.isInteger(nodes) || nodes < 1) refuse(`--nodes must be a whole number of at least 1, not ${args.nodes}`);
if (nodes > 1 && !supportsReusePort(process.versions.node)) refuse(`--nodes ${nodes} shares the intake port with SO_REUSEPORT, which needs Node.js 22.12 or later; this is ${process.version}`);
let overrides;
try {
  overrides = JSON.parse(args.config);
} catch (err) {
  refuse(`--config is not JSON: ${err.message}`);
}
if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) refuse(`--config must be a JSON object of config keys, not ${args.config}`);
const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) refuse(`${name} is not set: run this as run-cmd.sh's RELAY_CMD`);
  return v;
};
const relayPort = Number(env('BENCH_RELAY_PORT'));
const sinkHosts = env('BENCH_SINK_HOSTS').split(',');
const sinkPort = Number(env('BENCH_SINK_PORT'));
const domains = Number(env('DOMAINS', '50'));
if (!Number.isInteger(domains) || domains < 1) refuse(`DOMAINS must be a whole number of at least 1, not ${process.env.DOMAINS}`);

const dir = mkdtempSync(join(tmpdir(), 'impulse-harness-'));
const dns = await startDns({});
const topology = nodes > 1 ? await startTopology('single', { appendfsync: 'always', dir: join(dir, 'redis'), log }) : undefined;
const routes = Object.fromEntries(Array.from({ length: domains }, (_, k) => [`d${k}.test`, sinkHosts[k % sinkHosts.length]]));

const daemons = Array.from({ length: nodes }, (_, i) => {
  const nodeDir = join(dir, `node-${i}`);
  mkdirSync(nodeDir);
  const config = {
    ...benchDaemonConfig(dns.server, sinkPort),
    routes,
    redis: topology ? topology.config : { embedded: true, dir: join(nodeDir, 'redis') },
    admin: { socket: join(nodeDir, 'admin.sock') },
    listen: [{ address: '127.0.0.1', port: relayPort, ...(nodes > 1 ? { reuse_port: true } : {}) }],
    ...(nodes > 1 ? { node_name: `harness-${i}` } : {}),
    ...overrides,
  };
  const configPath = join(nodeDir, 'impulse.yaml');
  writeFileSync(configPath, stringify(config));
  const proc = spawn(process.execPath, [...SHIPPED_NODE_ARGS, CLI_PATH, 'start', '-c', configPath], { cwd: nodeDir, stdio: 'inherit' });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exited };
});
log(`${nodes} daemon${nodes > 1 ? 's' : ''} (${daemons.map((d) => d.proc.pid).join(', ')}) on 127.0.0.1:${relayPort}, ${domains} domains routed to ${sinkHosts.length} sink address${sinkHosts.length > 1 ? 'es' : ''}:${sinkPort}`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  for (const d of daemons) d.proc.kill('SIGTERM');
  const ended = await Promise.all(daemons.map((d) => d.exited));
  await topology?.stop();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(ended.every((e) => e.code === 0) ? 0 : 1);
};
// The test helpers that started Redis kill it at once on a signal; here the daemons stop first.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.removeAllListeners(signal);
  process.on(signal, stop);
}
// A daemon that exits on its own (a bad config, a crash) ends the relay: the harness then sees it gone.
for (const d of daemons) d.exited.then(() => stop());

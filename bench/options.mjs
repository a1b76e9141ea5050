// The runner's command line: the flags, each workload's defaults under them, and the checks that
// refuse a combination that does not apply, before anything is started. Read once, at import.
import { parseArgs } from 'node:util';
import { TOPOLOGIES } from './redis-topology.mjs';
import { WORKLOADS } from './workloads.mjs';

const USAGE = `usage: npm run bench -- <${Object.keys(WORKLOADS).join('|')}> [--runs 1] [--n N] [--size BYTES]
  [--conns C] [--domains D] [--rate MSG_S] [--appendfsync always|everysec|no] [--timeout-s 600]
  [--redis embedded|single|sentinel|cluster] (sentinel, cluster: W1, W2) [--nodes N] [--wait-replicas N]
  [--backlog N --tarpit-ms MS --settle-backlog] (W3) [--hold-s S --drain-s S] (W4; --hold-s W7) [--greet-ms MS --data-ms MS] (W5) [--limit-rate R] (W6)
  [--config '{"key": value}']
  [--dkim rsa|ed25519|both] [--mta-sts] [--warm N] (W1, W5) [--cpu-prof DIR] [--node-args="FLAGS"] [--commandstats]`;

const parsed = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '1' },
    n: { type: 'string' },
    size: { type: 'string' },
    conns: { type: 'string' },
    domains: { type: 'string' },
    rate: { type: 'string', default: '0' },
    appendfsync: { type: 'string', default: 'always' },
    'timeout-s': { type: 'string' },
    backlog: { type: 'string' },
    'tarpit-ms': { type: 'string' },
    'drain-s': { type: 'string' },
    'hold-s': { type: 'string' },
    // W6: messages per second its MX accepts from one source address; beyond that it answers 421 4.7.28.
    'limit-rate': { type: 'string' },
    // W5: how late its MX hosts send their greeting and answer the end of DATA, in ms.
    'greet-ms': { type: 'string' },
    'data-ms': { type: 'string' },
    // W3: start W1 only once the consumer has parked the whole backlog (it sits in the queue).
    'settle-backlog': { type: 'boolean', default: false },
    // Daemon config keys over the bench defaults, as YAML-compatible JSON: compares settings.
    config: { type: 'string', default: '{}' },
    // DKIM signing of every message (the injector's From: domain): an RSA-2048 key, an Ed25519 key, or both.
    dkim: { type: 'string' },
    // Every recipient domain publishes an MTA-STS policy in mode testing (bench/mta-sts.mjs).
    'mta-sts': { type: 'boolean', default: false },
    // Messages delivered before the measured run, so that it finds V8's code compiled, as a daemon that has been running does.
    warm: { type: 'string', default: '0' },
    // Profiling aids: the daemon writes a V8 CPU profile into this directory; Redis's per-command counts go to stderr.
    'cpu-prof': { type: 'string' },
    // Further node flags for the daemon, space-separated (e.g. "--heapsnapshot-signal=SIGUSR2").
    'node-args': { type: 'string', default: '' },
    commandstats: { type: 'boolean', default: false },
    // Where the queue lives (bench/redis-topology.mjs): the embedded Redis unless --nodes needs a shared one.
    redis: { type: 'string' },
    // The same as --redis single, the name it had first.
    'external-redis': { type: 'boolean', default: false },
    // Daemons sharing the run's Redis, as a cluster's nodes do.
    nodes: { type: 'string', default: '1' },
    'wait-replicas': { type: 'string' },
    // Latency per second of injection (count, p50, p99, max) to stderr: where the slow messages were sent.
    timeline: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});

export const flags = parsed.values;
const { positionals } = parsed;
export const name = positionals[0]?.toUpperCase();
export const workload = WORKLOADS[name];
if (flags.help || !workload || positionals.length !== 1) {
  console.error(flags.help ? USAGE : `${positionals.length ? `unknown workload ${positionals.join(' ')}\n` : ''}${USAGE}`);
  process.exit(flags.help ? 0 : 2);
}
function refuse(message) {
  console.error(message);
  process.exit(2);
}
if (flags.dkim !== undefined && !['rsa', 'ed25519', 'both'].includes(flags.dkim)) refuse(`--dkim must be rsa, ed25519 or both, not ${flags.dkim}`);
// Made and tried for these two, as --redis sentinel and cluster were for W1 and W2.
if (flags['mta-sts'] && !['W1', 'W5'].includes(name)) refuse(`--mta-sts runs W1 or W5 only, not ${name}`);
if (!['always', 'everysec', 'no'].includes(flags.appendfsync)) refuse(`--appendfsync must be always, everysec or no, not ${flags.appendfsync}`);

function count(flag, fallback) {
  const raw = flags[flag];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0) refuse(`--${flag} must be a non-negative number, not ${raw}`);
  return v;
}
const d = workload.defaults;
const n = count('n', d.n);
const limitRate = count('limit-rate', d.limitRate);
if (workload.rateLimitHosts && !(limitRate > 0)) refuse(`--limit-rate must be above 0, not ${flags['limit-rate']}`);
const nodes = count('nodes', 1);
if (!Number.isInteger(nodes) || nodes < 1) refuse(`--nodes must be a whole number from 1, not ${flags.nodes}`);
if (flags['external-redis'] && (flags.redis ?? 'single') !== 'single') refuse(`--external-redis is --redis single, not ${flags.redis}`);
export const redis = flags['external-redis'] ? 'single' : flags.redis ?? (nodes > 1 ? 'single' : 'embedded');
if (!TOPOLOGIES.includes(redis)) refuse(`--redis must be one of ${TOPOLOGIES.join(', ')}, not ${redis}`);
if (nodes > 1 && redis === 'embedded') refuse('--nodes above 1 needs a Redis the nodes share: --redis single, sentinel or cluster');
if (!workload.daemon && (redis !== 'embedded' || nodes > 1)) refuse(`${name} runs no daemon: --redis and --nodes do not apply`);
// As when --redis came: W3 and W4 read the queue's lists, which a cluster splits over its shards,
// and W6 was not tried on either.
if (['sentinel', 'cluster'].includes(redis) && !['W1', 'W2'].includes(name)) refuse(`--redis ${redis} runs W1 or W2 only`);
export const waitReplicas = count('wait-replicas', undefined);
if (waitReplicas !== undefined && !['sentinel', 'cluster'].includes(redis)) refuse('--wait-replicas needs --redis sentinel or cluster: the others have no replica');
export const opts = {
  runs: count('runs', 1),
  nodes,
  n,
  size: count('size', d.size),
  conns: count('conns', d.conns),
  domains: count('domains', d.domains),
  rate: count('rate', 0),
  // A rate-limited MX takes n / R seconds at best: the wait scales with that, so a larger N is
  // not cut short, and a sender that never gets through still ends the run.
  timeoutMs: count('timeout-s', d.timeoutS ?? (workload.rateLimitHosts ? 120 + (3 * n) / limitRate : 600)) * 1000,
  backlog: count('backlog', d.backlog),
  tarpitMs: count('tarpit-ms', d.tarpitMs),
  drainMs: count('drain-s', d.drainS) * 1000,
  holdMs: count('hold-s', d.holdS) * 1000,
  limitRate,
  greetMs: count('greet-ms', d.greetMs ?? 0),
  dataMs: count('data-ms', d.dataMs ?? 0),
  warm: count('warm', 0),
};
if (!Number.isInteger(opts.warm)) refuse(`--warm must be a whole number of messages, not ${flags.warm}`);
// The workloads whose rates the targets are about; the others measure other things (queue, memory, limits).
if (opts.warm > 0 && !['W1', 'W5'].includes(name)) refuse(`--warm runs W1 or W5 only, not ${name}`);

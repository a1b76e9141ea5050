// The Redis a bench run's daemon uses when it is not the embedded one (`--redis`): one external
// redis-server, a primary with a replica behind three sentinels, or a Redis Cluster of three
// masters with a replica each, started with the test harnesses; and what every master did over a
// run, from INFO (commands, calls by command with Lua's own, AOF bytes, bytes in, CPU), so the
// figures per message add up over the masters whatever the topology.
import { Redis } from 'ioredis';
import { startRedis } from '../dist/test/helpers/redis.js';
import { startRedisCluster } from '../dist/test/helpers/redis-cluster.js';
import { startRedisSentinel } from '../dist/test/helpers/redis-sentinel.js';

export const TOPOLOGIES = ['embedded', 'single', 'sentinel', 'cluster'];

const field = (text, key) => Number(new RegExp(`^${key}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);

/** One data node's counters now. */
async function nodeSample(redis) {
  const [stats, persistence, cpu, memory, commandstats] = await Promise.all(
    ['stats', 'persistence', 'cpu', 'memory', 'commandstats'].map((s) => redis.info(s)));
  const calls = {};
  for (const [, cmd, n] of commandstats.matchAll(/^cmdstat_(\S+?):calls=(\d+)/gm)) calls[cmd] = Number(n);
  return {
    commands: field(stats, 'total_commands_processed'),
    netIn: field(stats, 'total_net_input_bytes'),
    forks: field(stats, 'total_forks'),
    forkUsec: field(stats, 'latest_fork_usec'),
    aof: field(persistence, 'aof_current_size'),
    cpu: field(cpu, 'used_cpu_user') + field(cpu, 'used_cpu_sys'),
    usedMemory: field(memory, 'used_memory'),
    peakMemory: field(memory, 'used_memory_peak'),
    calls,
  };
}

/** What each master did between two samples, and their sum. */
export function masterDelta(before, after) {
  const per = [...after.entries()].map(([port, a]) => {
    const b = before.get(port);
    return {
      port, commands: a.commands - (b?.commands ?? 0), aof: a.aof - (b?.aof ?? 0), netIn: a.netIn - (b?.netIn ?? 0),
      cpu: a.cpu - (b?.cpu ?? 0), usedMemory: a.usedMemory, peakMemory: a.peakMemory, forks: a.forks - (b?.forks ?? 0), forkUsec: a.forkUsec,
    };
  });
  const sum = (k) => per.reduce((x, p) => x + p[k], 0);
  return { per, commands: sum('commands'), aof: sum('aof'), netIn: sum('netIn'), cpu: sum('cpu'),
    usedMemory: sum('usedMemory'), peakMemory: sum('peakMemory'), forks: sum('forks'), forkUsec: Math.max(...per.map((p) => p.forkUsec)) };
}

/** Redis calls per message by command over all masters, Lua's own calls included. */
export function callsByCommand(before, after) {
  const out = {};
  for (const [port, a] of after) for (const [cmd, n] of Object.entries(a.calls)) out[cmd] = (out[cmd] ?? 0) + n - (before.get(port)?.calls[cmd] ?? 0);
  return out;
}

/**
 * Starts the topology: the daemon's `redis` config section for it, the masters' counters, and a
 * stop. AOF rewrites are turned off, so the AOF's growth over a run is what the run wrote.
 */
export async function startTopology(kind, appendfsync) {
  let stop;
  let config;
  let masterPorts;
  if (kind === 'single') {
    const redis = await startRedis({ appendfsync });
    stop = () => redis.stop();
    config = { url: redis.url };
    masterPorts = async () => [redis.port];
  } else if (kind === 'sentinel') {
    const topology = await startRedisSentinel({ appendfsync });
    stop = () => topology.stop();
    config = { sentinels: topology.sentinels.map((s) => `${s.host}:${s.port}`), sentinel_name: topology.name };
    masterPorts = async () => [(await topology.primary()).port];
  } else if (kind === 'cluster') {
    const cluster = await startRedisCluster({ appendfsync });
    stop = () => cluster.stop();
    config = { cluster: cluster.urls };
    masterPorts = async () => (await cluster.masters()).map((m) => m.port);
  } else {
    throw new Error(`unknown topology ${kind}`);
  }
  const clients = new Map();
  const client = (port) => {
    if (!clients.has(port)) clients.set(port, new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
    return clients.get(port);
  };
  for (const port of await masterPorts()) await client(port).config('SET', 'auto-aof-rewrite-percentage', '0');
  return {
    config,
    /** Counters of every master now, by port. */
    async sample() {
      const ports = await masterPorts();
      return new Map(await Promise.all(ports.map(async (port) => [port, await nodeSample(client(port))])));
    },
    async stop() {
      for (const c of clients.values()) c.disconnect();
      await stop();
    },
  };
}

/** The embedded Redis's counters, in the same shape: one master. */
export async function embeddedSample(redis) {
  return new Map([[0, await nodeSample(redis)]]);
}

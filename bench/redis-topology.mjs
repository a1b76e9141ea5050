// Where a run's queue lives (`--redis`: the daemon's embedded Redis, one redis-server, Sentinel or
// Cluster, the last three the test harnesses') and what its masters did, summed over them.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis } from '../dist/test/helpers/redis.js';
import { startRedisCluster } from '../dist/test/helpers/redis-cluster.js';
import { startRedisSentinel } from '../dist/test/helpers/redis-sentinel.js';
import { redisChildOf } from './proc.mjs';

// What src/store/embedded-redis.ts sets beyond the harnesses' servers, so that a topology differs
// from the embedded Redis only by where it runs and how the daemons reach it.
const AS_EMBEDDED = ['rdbcompression', 'no', 'hash-max-listpack-value', '512', 'maxmemory-policy', 'noeviction'];

// A rewrite (Redis 7's multi-part AOF) starts a new incremental file and deletes the old one
// when it ends, a second or more later: looking this often sees every file at its final size.
const AOF_POLL_MS = 100;

const field = (text, key) => Number(new RegExp(`^${key}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);

/** One master's counters now. */
async function masterSample(redis) {
  const [stats, cpu, memory, commandstats] = await Promise.all(['stats', 'cpu', 'memory', 'commandstats'].map((s) => redis.info(s)));
  const calls = {};
  for (const [, cmd, n, usec] of commandstats.matchAll(/^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/gm)) {
    calls[cmd] = { calls: Number(n), usec: Number(usec) };
  }
  return {
    commands: field(stats, 'total_commands_processed'),
    netIn: field(stats, 'total_net_input_bytes'),
    forks: field(stats, 'total_forks'),
    forkUsec: field(stats, 'latest_fork_usec'),
    cpu: field(cpu, 'used_cpu_user') + field(cpu, 'used_cpu_sys'),
    usedMemory: field(memory, 'used_memory'),
    peakMemory: field(memory, 'used_memory_peak'),
    calls,
  };
}

/**
 * What each master did between two samples (counters as differences, memory and the latest fork
 * as they are in `after`), and their sum; against an empty `before`, the sums now.
 */
export function masterDelta(before, after) {
  const per = [...after.entries()].map(([id, a]) => {
    const b = before.get(id);
    return {
      id, commands: a.commands - (b?.commands ?? 0), netIn: a.netIn - (b?.netIn ?? 0), cpu: a.cpu - (b?.cpu ?? 0),
      forks: a.forks - (b?.forks ?? 0), forkUsec: a.forkUsec, usedMemory: a.usedMemory, peakMemory: a.peakMemory,
    };
  });
  const sum = (k) => per.reduce((x, p) => x + p[k], 0);
  return {
    per, commands: sum('commands'), netIn: sum('netIn'), cpu: sum('cpu'), forks: sum('forks'),
    forkUsec: Math.max(...per.map((p) => p.forkUsec)), usedMemory: sum('usedMemory'), peakMemory: sum('peakMemory'),
  };
}

/** Redis calls and µs by command between two samples, over all masters, Lua's own calls included. */
export function callsByCommand(before, after) {
  const out = {};
  for (const [id, a] of after) {
    for (const [cmd, { calls, usec }] of Object.entries(a.calls)) {
      const b = before.get(id)?.calls[cmd];
      const o = (out[cmd] ??= { calls: 0, usec: 0 });
      o.calls += calls - (b?.calls ?? 0);
      o.usec += usec - (b?.usec ?? 0);
    }
  }
  return out;
}

/**
 * Bytes the masters append to their AOF from now on: the growth of every incremental file in
 * each one's AOF directory, rewrites included (their base files, a snapshot of the data, are not
 * counted), so that it holds under the production defaults, where rewrites run.
 */
function watchAof(dirs) {
  const sizes = () => {
    const out = new Map();
    for (const dir of dirs) {
      for (const f of readdirSync(dir)) {
        if (!f.endsWith('.incr.aof')) continue;
        try {
          out.set(join(dir, f), statSync(join(dir, f)).size);
        } catch {
          // deleted between the listing and the stat: the previous look had its final size
        }
      }
    }
    return out;
  };
  const start = sizes();
  const largest = new Map(start);
  const look = () => {
    for (const [f, size] of sizes()) largest.set(f, Math.max(size, largest.get(f) ?? 0));
  };
  const timer = setInterval(look, AOF_POLL_MS).unref();
  return {
    stop() {
      clearInterval(timer);
      look();
      let bytes = 0;
      for (const [f, size] of largest) bytes += size - (start.get(f) ?? 0);
      return bytes;
    },
  };
}

async function aofDir(redis) {
  const [[, dir], [, sub]] = await Promise.all([redis.config('GET', 'dir'), redis.config('GET', 'appenddirname')]);
  return join(dir, sub);
}

/**
 * A topology as the runner sees it: the daemons' `redis` section, its masters' counters and AOF,
 * a client on its master when it has one only (for the queue's lists), and a stop. `masters()`
 * lists them as [id, client] pairs, asked each time, as a failover may move them.
 */
function topology({ config, masters, stop, describe, found = async () => {}, oneMaster = true }) {
  return {
    config,
    client: undefined,
    /** Once the daemons run, with the pid of one of them. */
    async attach(daemonPid) {
      await found(daemonPid);
      if (oneMaster) this.client = (await masters())[0][1];
    },
    async sample() {
      return new Map(await Promise.all((await masters()).map(async ([id, c]) => [id, await masterSample(c)])));
    },
    async watchAof() {
      return watchAof(await Promise.all((await masters()).map(([, c]) => aofDir(c))));
    },
    describe,
    stop,
  };
}

/** The daemon's own Redis: nothing to start, only, once the daemon runs it, to find. */
function embedded(dir, appendfsync, log) {
  let pid;
  let client;
  return topology({
    config: { embedded: true, dir, appendfsync },
    masters: async () => [[pid, client]],
    async found(daemonPid) {
      pid = redisChildOf(daemonPid);
      if (!pid) throw new Error(`no redis-server child of daemon ${daemonPid}`);
      client = new Redis({ path: join(dir, 'redis.sock'), maxRetriesPerRequest: null });
      // A stopping daemon's Redis exits before the daemon does, and the client retries until the
      // run stops it: the errors of those retries are no news. A command that fails still rejects.
      client.on('error', () => {});
    },
    describe: async () => `embedded redis-server ${pid}`,
    async stop() {
      client?.disconnect();
      if (!pid) return;
      // A daemon that had to be killed leaves its redis-server behind.
      try {
        process.kill(pid, 'SIGKILL');
        log(`killed leftover redis-server ${pid}`);
      } catch {
        // gone with the daemon, as it should be
      }
    },
  });
}

const STARTERS = {
  async single(appendfsync) {
    const harness = await startRedis({ appendfsync });
    return { harness, config: { url: harness.url }, ports: async () => [harness.port] };
  },
  async sentinel(appendfsync) {
    const harness = await startRedisSentinel({ appendfsync });
    return {
      harness,
      config: { sentinels: harness.sentinels.map((s) => `${s.host}:${s.port}`), sentinel_name: harness.name },
      ports: async () => [(await harness.primary()).port],
    };
  },
  async cluster(appendfsync) {
    const harness = await startRedisCluster({ appendfsync });
    return { harness, config: { cluster: harness.urls }, ports: async () => (await harness.masters()).map((m) => m.port) };
  },
};

export const TOPOLOGIES = ['embedded', ...Object.keys(STARTERS)];

/**
 * Starts the topology `kind` with `appendfsync`, each master set up as the embedded Redis is (the
 * embedded one starts with its daemon, its data in `dir`). attach() it once the daemons run, and
 * stop() it after they stopped.
 */
export async function startTopology(kind, { appendfsync, dir, log }) {
  if (kind === 'embedded') return embedded(dir, appendfsync, log);
  const { harness, config, ports } = await STARTERS[kind](appendfsync);
  const clients = new Map();
  const masters = async () => (await ports()).map((port) => {
    if (!clients.has(port)) clients.set(port, new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
    return [port, clients.get(port)];
  });
  for (const [, c] of await masters()) await c.config('SET', ...AS_EMBEDDED);
  return topology({
    config,
    masters,
    oneMaster: kind !== 'cluster',
    describe: async () => `redis ${kind}, master${kind === 'cluster' ? 's' : ''} on :${(await ports()).join(', :')}`,
    async stop() {
      for (const c of clients.values()) c.disconnect();
      await harness.stop();
    },
  });
}

// A real Redis Cluster (six redis-server processes, three masters with a replica each) for end-to-end tests, and the process and polling helpers the sentinel harness shares.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { forgetDir, removeOnExit } from './cleanup.js';
import { freePort } from './ports.js';
import { launchRedis } from './redis.js';

/** One redis-server process (data node or sentinel) on a free loopback port, in its own temp dir. */
export type RedisProcess = {
  port: number;
  url: string;
  /** Everything the process wrote, for failure messages. */
  readonly output: string;
  alive(): boolean;
  kill9(): Promise<void>;
  /** Kills the process if still running and removes its dir. */
  dispose(): Promise<void>;
};

type TestClusterNode = {
  port: number;
  url: string;
  role(): Promise<'master' | 'replica'>;
  kill9(): Promise<void>;
};

type Master = { port: number; url: string; slots: Array<[number, number]> };

export type TestRedisCluster = {
  /** redis:// URLs of every node (what a daemon's `redis.cluster` list takes). */
  urls: string[];
  nodes: TestClusterNode[];
  /** Masters with the slot ranges they serve, as a live node sees it. */
  masters(): Promise<Master[]>;
  /** The master serving a key's slot. */
  masterOf(key: string): Promise<{ port: number; url: string }>;
  /**
   * Commands each live node has executed, for load-share assertions. Connection, cluster and
   * replication administration (INFO, CLUSTER, CLIENT, PING, HELLO, COMMAND, ROLE, REPLCONF,
   * PSYNC, SELECT) is left out: clients, replicas and this harness send those, so they would blur
   * who carried the data. A replica counts the writes it applies from its master.
   */
  commandsProcessed(): Promise<Map<number, number>>;
  /** Resolves once one live node serves every slot of a master killed with kill9() and cluster_state is ok again on every live node. */
  failedOver(deadMasterPort: number): Promise<{ newMasterPort: number }>;
  stop(): Promise<void>;
};

export type TestRedisClusterOptions = {
  /** AOF fsync policy; everysec unless a test needs every acknowledged write on disk (always). */
  appendfsync?: 'always' | 'everysec' | 'no';
};

const READY = 'Ready to accept connections';
const SETTLE_TIMEOUT_MS = 20000;
const POLL_MS = 50;
// Short so a killed master is marked failed, and its replica elected, within a few seconds.
const NODE_TIMEOUT_MS = 1000;
const SLOTS = 16384;
const OUTPUT_LINES = 8;
const HOST = '127.0.0.1';
const ADMIN_COMMANDS = new Set(['info', 'cluster', 'client', 'ping', 'hello', 'command', 'role', 'replconf', 'psync', 'select']);

/**
 * Starts redis-server with the arguments argv builds for a port and a fresh dir (argv may also
 * write files there, such as a sentinel's config), resolving once `ready` appears in its output.
 */
export async function spawnRedis(argv: (port: number, dir: string) => Promise<string[]>, ready = READY): Promise<RedisProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'impulse-redis-'));
  removeOnExit(dir);
  let port = 0;
  let running: Awaited<ReturnType<typeof launchRedis>> | undefined;
  // A free port can be taken between probe and bind; only that failure is worth a retry.
  for (let attempt = 0; !running; attempt++) {
    port = await freePort();
    try {
      running = await launchRedis(await argv(port, dir), port, ready);
    } catch (err) {
      if (attempt >= 3 || !String(err).includes('Address already in use')) {
        rmSync(dir, { recursive: true, force: true });
        forgetDir(dir);
        throw err;
      }
    }
  }
  const { proc, exited, output } = running;
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const kill9 = async () => {
    if (alive()) proc.kill('SIGKILL');
    await exited;
  };
  return {
    port,
    url: `redis://${HOST}:${port}`,
    get output() {
      return output();
    },
    alive,
    kill9,
    async dispose() {
      // The data goes with the dir, so a graceful shutdown would have nothing to save.
      await kill9();
      rmSync(dir, { recursive: true, force: true });
      forgetDir(dir);
    },
  };
}

/** Starts count alike processes; if any fails, the others are disposed before the error is thrown. */
export async function spawnAll(count: number, argv: Parameters<typeof spawnRedis>[0], ready = READY): Promise<RedisProcess[]> {
  const results = await Promise.allSettled(Array.from({ length: count }, () => spawnRedis(argv, ready)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  if (failed) {
    await Promise.all(started.map((p) => p.dispose()));
    throw failed.reason;
  }
  return started;
}

/** The error with the last lines each process wrote, which tell what Redis itself made of the situation. */
export function explain(err: unknown, procs: RedisProcess[]): Error {
  const tails = procs.map((p) => `--- redis-server on port ${p.port}${p.alive() ? '' : ' (dead)'}:\n${p.output.trimEnd().split('\n').slice(-OUTPUT_LINES).join('\n')}`);
  return new Error(`${err instanceof Error ? err.message : String(err)}\n${tails.join('\n')}`);
}

/**
 * Calls probe every POLL_MS until it returns. A probe throws while the state it waits for is not
 * there yet, with a message describing what it saw; the last one is reported at the deadline.
 */
export async function settle<T>(what: string, timeoutMs: number, probe: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: not reached after ${timeoutMs} ms; last seen: ${(err as Error).message}`);
    }
    await delay(POLL_MS);
  }
}

/**
 * A connection for the harness's own queries. Calls fail rather than wait for a node that is
 * down; it still reconnects, because a promotion (sentinel's CLIENT KILL) drops it from live nodes.
 */
export function adminClient(port: number): Redis {
  const client = new Redis(port, HOST, { retryStrategy: () => POLL_MS, maxRetriesPerRequest: 0, commandTimeout: 2000 });
  // Failures surface as rejected commands; without a listener ioredis would also print each one.
  client.on('error', () => {});
  return client;
}

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*?)\\r?$`, 'm').exec(info)?.[1];
}

type SlotRange = [start: number, end: number, master: [host: string, port: number, ...rest: unknown[]], ...replicas: unknown[]];

export async function startRedisCluster(opts: TestRedisClusterOptions = {}): Promise<TestRedisCluster> {
  const appendfsync = opts.appendfsync ?? 'everysec';
  const procs = await spawnAll(6, async (port, dir) => [
    '--port', String(port),
    // freePort only vouches for the data port; the default bus port (port + 10000) may be taken or beyond 65535.
    '--cluster-port', String(await freePort()),
    '--bind', HOST,
    '--dir', dir,
    '--save', '',
    '--appendonly', 'yes',
    '--appendfsync', appendfsync,
    '--cluster-enabled', 'yes',
    '--cluster-config-file', join(dir, 'nodes.conf'),
    '--cluster-node-timeout', String(NODE_TIMEOUT_MS),
    // Otherwise a master waits 5 s for more replicas before it starts a diskless full sync.
    '--repl-diskless-sync-delay', '0',
    '--daemonize', 'no',
  ]);
  const admins = new Map(procs.map((p) => [p.port, adminClient(p.port)]));
  const byPort = new Map(procs.map((p) => [p.port, p]));
  const live = () => procs.filter((p) => p.alive());
  const admin = (port: number) => admins.get(port)!;
  /** Slot ranges of masters killed through kill9(), which failedOver() looks for on a new owner. */
  const lost = new Map<number, Array<[number, number]>>();

  const stop = async () => {
    for (const client of admins.values()) client.disconnect();
    await Promise.all(procs.map((p) => p.dispose()));
  };
  const slotsOf = async (port: number) => (await admin(port).cluster('SLOTS')) as unknown as SlotRange[];
  const roleOf = async (port: number) => ((await admin(port).role())[0] === 'master' ? 'master' as const : 'replica' as const);
  const masters = async (): Promise<Master[]> => {
    const seen = new Map<number, Master>();
    for (const [start, end, [, port]] of await slotsOf(live()[0]!.port)) {
      if (!seen.has(port)) seen.set(port, { port, url: `redis://${HOST}:${port}`, slots: [] });
      seen.get(port)!.slots.push([start, end]);
    }
    return [...seen.values()].sort((a, b) => a.port - b.port);
  };

  try {
    await create(procs);
    await settle('cluster ready', SETTLE_TIMEOUT_MS, async () => {
      const states = await Promise.all(procs.map(async (p) => {
        const info = await admin(p.port).cluster('INFO');
        const role = await admin(p.port).role();
        const [state, known, assigned] = ['cluster_state', 'cluster_known_nodes', 'cluster_slots_assigned'].map((f) => field(info, f));
        // ROLE lists only replicas that finished their initial sync; a replica reports its link.
        const synced = role[0] === 'master' ? (role[2] as unknown[]).length : undefined;
        const ok = state === 'ok' && known === '6' && assigned === String(SLOTS) && (synced === undefined ? role[3] === 'connected' : synced === 1);
        const replication = synced === undefined ? `replica ${role[3]}` : `master with ${synced} synced replicas`;
        return { ok, seen: `${p.port}: ${state}, ${known} nodes, ${assigned} slots, ${replication}` };
      }));
      if (!states.every((s) => s.ok)) throw new Error(states.map((s) => s.seen).join('; '));
    });
  } catch (err) {
    const explained = explain(err, procs);
    await stop();
    throw explained;
  }

  return {
    urls: procs.map((p) => p.url),
    nodes: procs.map((p) => ({
      port: p.port,
      url: p.url,
      role: () => roleOf(p.port),
      async kill9() {
        const ranges = (await masters()).find((m) => m.port === p.port)?.slots;
        if (ranges) lost.set(p.port, ranges);
        await p.kill9();
        admin(p.port).disconnect();
      },
    })),
    masters,
    async masterOf(key) {
      const slot = await admin(live()[0]!.port).cluster('KEYSLOT', key);
      const owner = (await masters()).find((m) => m.slots.some(([a, b]) => a <= slot && slot <= b));
      if (!owner) throw new Error(`no master serves slot ${slot} of key ${key}`);
      return { port: owner.port, url: owner.url };
    },
    async commandsProcessed() {
      const counts = new Map<number, number>();
      for (const p of live()) {
        let total = 0;
        for (const m of (await admin(p.port).info('commandstats')).matchAll(/^cmdstat_([^:|]+)[^:]*:calls=(\d+)/gm)) {
          if (!ADMIN_COMMANDS.has(m[1]!)) total += Number(m[2]);
        }
        counts.set(p.port, total);
      }
      return counts;
    },
    async failedOver(deadMasterPort) {
      const ranges = lost.get(deadMasterPort);
      if (!ranges) throw new Error(`failedOver(${deadMasterPort}): no master on that port was killed through kill9()`);
      const lostSlots = ranges.map(([a, b]) => `${a}-${b}`).join(',');
      return settle(`failover of master ${deadMasterPort}`, SETTLE_TIMEOUT_MS, async () => {
        const views = await Promise.all(live().map(async (p) => {
          const state = field(await admin(p.port).cluster('INFO'), 'cluster_state');
          const slots = await slotsOf(p.port);
          const owners = new Set(ranges.map(([start, end]) => slots.find(([a, b]) => a <= start && end <= b)?.[2][1]));
          return { port: p.port, state, owners: [...owners] };
        }));
        const owners = new Set(views.flatMap((v) => v.owners));
        const [owner] = owners;
        const seen = views.map((v) => `${v.port}: ${v.state}, slots ${lostSlots} on ${v.owners.join('/')}`).join('; ');
        if (views.some((v) => v.state !== 'ok') || owners.size !== 1 || owner === undefined || owner === deadMasterPort
          || !byPort.get(owner)?.alive() || (await roleOf(owner)) !== 'master') throw new Error(seen);
        return { newMasterPort: owner };
      }).catch((err) => {
        throw explain(err, procs);
      });
    },
    stop,
  };
}

/** redis-cli assigns slots, pairs replicas with masters and waits until the nodes agree on the configuration. */
function create(procs: RedisProcess[]): Promise<void> {
  const args = ['--cluster', 'create', ...procs.map((p) => `${HOST}:${p.port}`), '--cluster-replicas', '1', '--cluster-yes'];
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: SETTLE_TIMEOUT_MS }, (err, stdout, stderr) => {
      // The exit status is not the whole story: this line is the closing check's word that every slot is assigned.
      if (err || !stdout.includes('[OK] All 16384 slots covered')) {
        reject(new Error(`redis-cli ${args.join(' ')} failed (${err?.message ?? 'no [OK] line'}):\n${stdout}${stderr}`));
      } else resolve();
    });
  });
}

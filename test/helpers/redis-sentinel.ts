// A real Sentinel set-up (a primary, one replica, three sentinels) for end-to-end tests of sentinel mode and failover.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminClient, explain, type RedisProcess, settle, spawnAll, spawnRedis } from './redis-cluster.js';

export type TestRedisSentinel = {
  /** What an ioredis client's `sentinels` option takes. */
  sentinels: Array<{ host: string; port: number }>;
  name: 'mymaster';
  /** The primary the sentinels currently announce. */
  primary(): Promise<{ port: number }>;
  killPrimary9(): Promise<void>;
  /** Resolves once every live sentinel announces a new primary, and that node has taken the primary role. */
  failedOver(oldPort: number): Promise<{ newPrimaryPort: number }>;
  stop(): Promise<void>;
};

export type TestRedisSentinelOptions = {
  /** AOF fsync policy of primary and replica; everysec unless a test needs every acknowledged write on disk (always). */
  appendfsync?: 'always' | 'everysec' | 'no';
};

const NAME = 'mymaster';
const HOST = '127.0.0.1';
const SETTLE_TIMEOUT_MS = 20000;
// Short so a killed primary is declared down, and a replica promoted, within a few seconds.
const DOWN_AFTER_MS = 1000;
const FAILOVER_TIMEOUT_MS = 3000;

function dataNodeArgs(port: number, dir: string, appendfsync: string): string[] {
  return [
    '--port', String(port),
    '--bind', HOST,
    '--dir', dir,
    '--save', '',
    '--appendonly', 'yes',
    '--appendfsync', appendfsync,
    // Otherwise the primary waits 5 s for more replicas before it starts a diskless full sync.
    '--repl-diskless-sync-delay', '0',
    '--daemonize', 'no',
  ];
}

/** Pairs of a flat [name, value, name, value, ...] reply, as SENTINEL MASTER and REPLICAS give. */
function record(flat: unknown): Record<string, string> {
  const list = flat as string[];
  return Object.fromEntries(Array.from({ length: list.length / 2 }, (_, i) => [list[2 * i]!, list[2 * i + 1]!]));
}

export async function startRedisSentinel(opts: TestRedisSentinelOptions = {}): Promise<TestRedisSentinel> {
  const appendfsync = opts.appendfsync ?? 'everysec';
  const data: RedisProcess[] = [];
  const sentinels: RedisProcess[] = [];
  const admins = new Map<number, ReturnType<typeof adminClient>>();
  const admin = (port: number) => {
    if (!admins.has(port)) admins.set(port, adminClient(port));
    return admins.get(port)!;
  };
  const stop = async () => {
    for (const client of admins.values()) client.disconnect();
    await Promise.all([...data, ...sentinels].map((p) => p.dispose()));
  };

  try {
    const primary = await spawnRedis(async (port, dir) => dataNodeArgs(port, dir, appendfsync));
    data.push(primary);
    const replica = await spawnRedis(async (port, dir) => [...dataNodeArgs(port, dir, appendfsync), '--replicaof', HOST, String(primary.port)]);
    data.push(replica);
    // Sentinels discover replicas from the primary's INFO, so the replica is synced before they start.
    await settle('replica synced', SETTLE_TIMEOUT_MS, async () => {
      const role = await admin(replica.port).role();
      if (role[3] !== 'connected') throw new Error(`replica ${replica.port} link ${role[3]}`);
    });
    sentinels.push(...await spawnAll(3, async (port, dir) => {
      // Sentinel rewrites its config file with what it learns, so it lives in the process's own dir.
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(conf, [
        `port ${port}`,
        `bind ${HOST}`,
        `dir ${dir}`,
        `sentinel monitor ${NAME} ${HOST} ${primary.port} 2`,
        `sentinel down-after-milliseconds ${NAME} ${DOWN_AFTER_MS}`,
        `sentinel failover-timeout ${NAME} ${FAILOVER_TIMEOUT_MS}`,
        '',
      ].join('\n'));
      return [conf, '--sentinel'];
    }, '+monitor master'));
    // Peers find each other through hello messages on the primary, published every 2 s.
    await settle('sentinels aware of the replica and of each other', SETTLE_TIMEOUT_MS, async () => {
      const views = await Promise.all(sentinels.map(async (s) => {
        const master = record(await admin(s.port).call('SENTINEL', 'MASTER', NAME));
        const replicas = (await admin(s.port).call('SENTINEL', 'REPLICAS', NAME) as unknown[]).map(record);
        const ok = master['flags'] === 'master' && master['num-other-sentinels'] === '2'
          && replicas.length === 1 && replicas[0]!['flags'] === 'slave' && replicas[0]!['port'] === String(replica.port);
        const known = replicas.map((r) => `${r['port']} ${r['flags']}`).join(',');
        return { ok, seen: `${s.port}: master ${master['flags']}, ${master['num-other-sentinels']} other sentinels, replicas ${known}` };
      }));
      if (!views.every((v) => v.ok)) throw new Error(views.map((v) => v.seen).join('; '));
    });
  } catch (err) {
    const explained = explain(err, [...data, ...sentinels]);
    await stop();
    throw explained;
  }

  const announced = async (sentinel: RedisProcess) => {
    const [, port] = (await admin(sentinel.port).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME)) as [string, string];
    return Number(port);
  };
  return {
    sentinels: sentinels.map((s) => ({ host: HOST, port: s.port })),
    name: NAME,
    async primary() {
      return { port: await announced(sentinels[0]!) };
    },
    async killPrimary9() {
      const port = await announced(sentinels[0]!);
      const node = data.find((d) => d.port === port);
      if (!node) throw new Error(`sentinels announce ${port}, which is not a node of this set-up`);
      await node.kill9();
      admins.get(port)?.disconnect();
    },
    failedOver(oldPort) {
      return settle(`failover from primary ${oldPort}`, SETTLE_TIMEOUT_MS, async () => {
        const ports = await Promise.all(sentinels.map(announced));
        const [port] = ports;
        const seen = `sentinels announce ${ports.join(', ')}`;
        if (port === undefined || port === oldPort || ports.some((p) => p !== port)) throw new Error(seen);
        const role = (await admin(port).role())[0];
        if (role !== 'master') throw new Error(`${seen}; that node's role is ${role}`);
        return { newPrimaryPort: port };
      }).catch((err) => {
        throw explain(err, [...data, ...sentinels]);
      });
    },
    stop,
  };
}

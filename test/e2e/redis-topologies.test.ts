// Proves the Redis Cluster and Sentinel harnesses stand up real topologies that behave as Redis
// does: every slot served by a master with a replica, keys spread by hash tag, and a kill -9 of
// a master or primary that the cluster or sentinels repair and an ioredis client writes through.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';
import { startRedisSentinel } from '../helpers/redis-sentinel.js';

/** A value read straight from one node, which answers MOVED rather than a value for a slot it does not serve. */
async function readFrom(url: string, key: string): Promise<string | null> {
  const redis = new Redis(url, { maxRetriesPerRequest: 0 });
  try {
    return await redis.get(key);
  } finally {
    redis.disconnect();
  }
}

describe('redis cluster', () => {
  let cluster: TestRedisCluster;
  let client: Cluster;

  before(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(cluster.urls);
  });

  after(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  test('three masters serve all 16384 slots, and each has a synced replica', async () => {
    const masters = await cluster.masters();
    assert.equal(masters.length, 3, `masters: ${JSON.stringify(masters)}`);
    const ranges = masters.flatMap((m) => m.slots).sort((a, b) => a[0] - b[0]);
    let next = 0;
    for (const [start, end] of ranges) {
      assert.equal(start, next, `slot ranges have a gap or overlap: ${JSON.stringify(ranges)}`);
      next = end + 1;
    }
    assert.equal(next, 16384);

    const roles = await Promise.all(cluster.nodes.map(async (n) => ({ port: n.port, role: await n.role() })));
    const replicas = roles.filter((r) => r.role === 'replica');
    assert.equal(replicas.length, 3, `roles: ${JSON.stringify(roles)}`);
    const replicated = await Promise.all(replicas.map(async (r) => {
      const redis = new Redis(r.port, '127.0.0.1');
      try {
        const [, , masterPort, state] = await redis.role() as [string, string, number, string];
        assert.equal(state, 'connected', `replica ${r.port} link ${state}`);
        return masterPort;
      } finally {
        redis.disconnect();
      }
    }));
    assert.deepEqual(replicated.sort(), masters.map((m) => m.port).sort());
  });

  test('keys with different hash tags land on different masters, and each master carries its writes', async () => {
    const tags = ['a', 'b', 'c'];
    const beforeWrites = await cluster.commandsProcessed();
    for (const tag of tags) for (let i = 0; i < 20; i++) await client.set(`{${tag}}:${i}`, `${tag}${i}`);
    const afterWrites = await cluster.commandsProcessed();

    const owners = await Promise.all(tags.map((tag) => cluster.masterOf(`{${tag}}:0`)));
    assert.equal(new Set(owners.map((o) => o.port)).size, 3, `owners: ${JSON.stringify(owners)}`);
    for (const [i, tag] of tags.entries()) {
      assert.equal(await readFrom(owners[i]!.url, `{${tag}}:19`), `${tag}19`);
      const done = afterWrites.get(owners[i]!.port)! - beforeWrites.get(owners[i]!.port)!;
      assert.ok(done >= 20, `master ${owners[i]!.port} executed ${done} commands for the 20 writes of {${tag}}`);
    }
  });

  test('after kill -9 of a master its replica takes over the slots, and the client writes there again', async () => {
    const key = '{a}:failover';
    await client.set(key, 'before');
    const dead = await cluster.masterOf(key);
    await cluster.nodes.find((n) => n.port === dead.port)!.kill9();

    const { newMasterPort } = await cluster.failedOver(dead.port);
    assert.notEqual(newMasterPort, dead.port);
    const owner = await cluster.masterOf(key);
    assert.equal(owner.port, newMasterPort);
    await client.set(key, 'after');
    assert.equal(await readFrom(owner.url, key), 'after');
  });
});

test('sentinel: a client writes, the primary is killed with -9, the replica is promoted and the same client writes again', async () => {
  const topology = await startRedisSentinel();
  const client = new Redis({ sentinels: topology.sentinels, name: topology.name });
  // The client reports each refused reconnect to the dead primary; they are expected here.
  client.on('error', () => {});
  try {
    await client.set('k', 'before');
    const old = await topology.primary();
    assert.equal(await readFrom(`redis://127.0.0.1:${old.port}`, 'k'), 'before');

    await topology.killPrimary9();
    const { newPrimaryPort } = await topology.failedOver(old.port);
    assert.notEqual(newPrimaryPort, old.port);
    assert.deepEqual(await topology.primary(), { port: newPrimaryPort });
    await client.set('k', 'after');
    assert.equal(await readFrom(`redis://127.0.0.1:${newPrimaryPort}`, 'k'), 'after');
  } finally {
    client.disconnect();
    await topology.stop();
  }
});

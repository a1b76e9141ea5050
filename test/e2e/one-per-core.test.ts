// Several daemons on one host, one per core, as impulse@.service runs them: each with its own node
// name, admin socket and metrics port on one Redis, sharing one intake listener with reuse_port
// where Node.js can (22.12 and later), which the kernel spreads connections over; an older Node.js
// refuses the option by name instead of failing on the second daemon's bind.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Daemon, startDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { supportsReusePort } from '../../src/intake/reuse-port.js';
import { type World, buildWorld, mxZone } from './world.js';

let world: World;
let redis: TestRedis;

before(async () => {
  redis = await startRedis();
  world = await buildWorld({ zone: mxZone({ 'core.test': '127.0.0.150' }), sinks: { core: { host: '127.0.0.150' } }, config: { redis: { url: redis.url } } });
});

after(async () => {
  await world.close();
  await redis.stop();
});

async function instance(i: number, port: number, wait = true): Promise<Daemon> {
  const dir = join(world.dir, `core-${i}`);
  mkdirSync(dir, { recursive: true });
  return startDaemon({
    ...world.config, node_name: `host-${i}`, listen: [{ address: '127.0.0.1', port, reuse_port: true }],
    admin: { socket: join(dir, 'admin.sock') }, metrics: { listen: `127.0.0.1:${await freePort('127.0.0.1')}` },
  }, { dir, waitReady: wait });
}

test('two daemons share one intake port with reuse_port, or an older Node.js refuses it by name', async () => {
  const port = await freePort('127.0.0.1');
  if (!supportsReusePort(process.versions.node)) {
    const d = await instance(0, port, false);
    const { code } = await d.exited;
    assert.notEqual(code, 0);
    assert.match(JSON.stringify(d.logs) + d.stderr, /reuse_port needs Node\.js 22\.12 or later/);
    return;
  }
  const daemons = [await instance(0, port), await instance(1, port)];
  try {
    const mail = Array.from({ length: 40 }, (_, i) => `c${i}@core.test`);
    for (const to of mail) await sendMail({ host: '127.0.0.1', port, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
    await world.sinks.core!.waitForRecipients(mail);
    const received = daemons.map((d) => d.logs.filter((r) => r.event === 'reception').length);
    assert.equal(received[0]! + received[1]!, mail.length);
    assert.ok(received.every((n) => n > 0), `the kernel spread the connections over both: ${received.join(' and ')}`);
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
  }
});

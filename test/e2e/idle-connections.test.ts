// Many idle sessions (a slow upstream, a scan, a stuck pool) must not lock out a client with
// mail: 5,000 open connections that only took their greeting, and a message still goes through.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import { RawSmtp } from '../helpers/raw-smtp.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const IDLE = 5000;
const BATCH = 500;

let world: World;
let daemon: Daemon;

before(async () => {
  world = await buildWorld({ zone: mxZone({ 'busy.test': '127.0.0.2' }), sinks: { mx: { host: '127.0.0.2' } } });
  daemon = await world.start();
});

after(async () => {
  await world.close();
});

test(`${IDLE} idle intake connections do not stop another client from injecting`, async () => {
  const idle: RawSmtp[] = [];
  try {
    for (let opened = 0; opened < IDLE; opened += BATCH) {
      const batch = await Promise.all(Array.from({ length: BATCH }, () => RawSmtp.connect({ host: '127.0.0.1', port: world.intakePort, timeoutMs: 30_000 })));
      idle.push(...batch);
    }
    assert.equal(idle.filter((c) => c.greeting.startsWith('220 ')).length, IDLE);

    const to = 'through@busy.test';
    const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
    assert.match(res.response, /^250 2\.0\.0 Ok queued as /);
    await world.sinks.mx!.waitForRecipients([to]);
    // Every idle session is still open and served: none was dropped to make room.
    assert.equal(idle.filter((c) => c.closed).length, 0);
    assert.match(await idle[IDLE - 1]!.command('NOOP'), /^250 /);
    assert.equal(daemon.logs.filter((r) => r.event === 'too_many_clients').length, 0);
  } finally {
    for (const c of idle) c.close();
  }
});

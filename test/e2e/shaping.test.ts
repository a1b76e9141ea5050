// Shaping end to end: a receiver answering with Gmail's rate-limit reply is suspended for the
// rule's duration while another domain flows; the action is listed by `impulse shaping`, shown by
// `impulse domain`, kept across a restart, and ended by `impulse shaping clear`.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCli } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone } from './world.js';

const RATE = '4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.';

const RP001 = '4.3.2 RP-001 (COL004-MC1F12) Unfortunately, some messages from [127.0.0.1] weren\'t sent. Please try again. We have limits for how many messages can be sent per hour and per day.';

let world: World;
let limited = true;
let rpOnce = 1;

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({ 'busy.test': '127.0.0.150', 'calm.test': '127.0.0.151' }),
      'hotmail.test': { mx: [{ preference: 10, exchange: 'mx.olc.protection.outlook.test' }] },
      'outlook.test': { mx: [{ preference: 10, exchange: 'mx.olc.protection.outlook.test' }] },
      'mx.olc.protection.outlook.test': { a: ['127.0.0.152'] },
    },
    sinks: {
      busy: { host: '127.0.0.150', behaviour: (ctx) => (limited && ctx.stage === 'data' ? { code: 421, message: RATE } : undefined) },
      calm: { host: '127.0.0.151' },
      outlook: { host: '127.0.0.152', behaviour: (ctx) => (ctx.stage === 'data' && rpOnce-- > 0 ? { code: 421, message: RP001 } : undefined) },
    },
  });
});

after(async () => {
  await world.close();
});

async function inject(to: string): Promise<void> {
  await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
}

test('a 421 4.7.28 suspends its binding × domain for the duration, listed, shown, kept across a restart and cleared by the operator', async () => {
  const redis = { embedded: true, dir: join(world.dir, 'redis-shaping'), appendfsync: 'everysec' };
  const statusPort = await freePort('127.0.0.1');
  const config = {
    redis, metrics: { listen: `127.0.0.1:${statusPort}` }, retry_interval: '1s',
    shaping_rules: [{ name: 'gmail-rate', match: '4\\.7\\.28', action: 'suspend', duration: '1h' }],
  };
  const first = await world.start(config);
  try {
    await inject('a@busy.test');
    const action = await first.waitForLog((r) => r.event === 'shaping_action');
    assert.deepEqual([action.rule, action.action, action.scope, action.binding, action.domain], ['gmail-rate', 'suspend', 'binding_domain', 'default', 'busy.test']);
    assert.equal(action.reply, `421 ${RATE}`);
    const sessions = world.sinks.busy!.connections;
    // The deferred message and new mail for the domain wait; other domains flow.
    await inject('b@busy.test');
    await inject('c@calm.test');
    await world.sinks.calm!.waitForRecipients(['c@calm.test']);

    const listed = await runCli(['shaping', '--json', '-c', first.configPath]);
    assert.equal(listed.code, 0, listed.stderr);
    const [view] = (JSON.parse(listed.stdout) as { actions: Array<Record<string, unknown>> }).actions;
    assert.deepEqual([view?.id, view?.scope, view?.domain], ['gmail-rate|binding_domain:default:busy.test', 'binding_domain', 'busy.test']);
    assert.ok(Number(view?.remaining_s) > 3500);
    const text = await runCli(['shaping', '-c', first.configPath]);
    assert.match(text.stdout, /^gmail-rate\s+binding default :: domain busy\.test\s+suspend\s+\S+ \(in 59m\d\ds\)\s+421 4\.7\.28 /m);
    const domain = await runCli(['domain', 'busy.test', '-c', first.configPath]);
    assert.match(domain.stdout, /^Shaping:\s+suspend on binding default :: domain busy\.test until .* \(rule gmail-rate, after: 421 4\.7\.28 /m);
    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    assert.match(metrics, /^impulse_shaping_actions_total\{rule="gmail-rate",action="suspend",scope="binding_domain"\} 1$/m);
    assert.equal(world.sinks.busy!.connections, sessions, 'no new connection to the suspended domain');
  } finally {
    await first.stop();
  }

  limited = false;
  const second = await world.start(config);
  try {
    const restored = await second.waitForLog((r) => r.event === 'shaping_action_restored');
    assert.equal(restored.id, 'gmail-rate|binding_domain:default:busy.test');
    const cleared = await runCli(['shaping', 'clear', '--domain', 'busy.test', '-c', second.configPath]);
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.match(cleared.stdout, /^ended 1 shaping action\n/);
    assert.equal((await second.waitForLog((r) => r.event === 'shaping_action_ended')).by, 'operator');
    await world.sinks.busy!.waitForRecipients(['a@busy.test', 'b@busy.test'], 20_000);
    const none = await runCli(['shaping', 'clear', '-c', second.configPath]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /shaping clear needs --id, --rule, --domain, --binding or --site/);
  } finally {
    await second.stop();
  }
});

test('a set rule on the site: after one RP-001 every domain on that MX host shares one budget of two messages a second, as the sink sees them', async () => {
  const d = await world.start({
    redis: { embedded: true, dir: join(world.dir, 'redis-site'), appendfsync: 'everysec' }, retry_interval: '1s',
    shaping_rules: [{
      name: 'microsoft-rate', match: 'RP-00[123]', mx_hosts: ['outlook.test'], scope: 'site', action: 'set', duration: '1h',
      options: { max_outbound_connections: 1, outbound_throttle_messages: '2/1' },
    }],
  });
  try {
    await inject('first@hotmail.test');
    const action = await d.waitForLog((r) => r.event === 'shaping_action');
    assert.deepEqual([action.scope, action.mx_host, action.options?.max_outbound_connections], ['site', 'mx.olc.protection.outlook.test', 1]);
    const to = [...Array.from({ length: 10 }, (_, i) => `h${i}@hotmail.test`), ...Array.from({ length: 10 }, (_, i) => `o${i}@outlook.test`)];
    await Promise.all(to.map((r) => inject(r)));
    const got = await world.sinks.outlook!.waitForRecipients(['first@hotmail.test', ...to], 30_000);
    const times = got.map((m) => m.receivedAt).sort((a, b) => a - b);
    // The throttle spaces the starts of transactions; arrivals keep that pace give or take their own
    // time on the wire, so the test allows half a second of it. 21 messages at two a second take ten.
    assert.ok(times.at(-1)! - times[0]! >= 9000, `21 arrivals over ${times.at(-1)! - times[0]!} ms`);
    for (let i = 2; i < times.length; i++) assert.ok(times[i]! - times[i - 2]! >= 500, `three arrivals within half a second: ${times.slice(i - 2, i + 1).join(', ')}`);
    // max_outbound_connections counts per ready queue (or sibling pool), as configured caps do: one for each domain at most.
    assert.ok(world.sinks.outlook!.peakConcurrency().total <= 2);
  } finally {
    await d.stop();
  }
});

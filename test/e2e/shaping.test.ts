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

let world: World;
let limited = true;

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'busy.test': '127.0.0.150', 'calm.test': '127.0.0.151' }),
    sinks: {
      busy: { host: '127.0.0.150', behaviour: (ctx) => (limited && ctx.stage === 'data' ? { code: 421, message: RATE } : undefined) },
      calm: { host: '127.0.0.151' },
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

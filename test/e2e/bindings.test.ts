// Bindings as a receiver sees them: each message arrives from its binding's source address with
// its EHLO name, whichever way the binding was assigned (header, rule, hook, group, default).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stableIndex } from '../../src/binding/registry.js';
import type { Daemon } from '../helpers/daemon.js';
import type { SinkMessage } from '../helpers/sink.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

const RECORDING_PLUGIN = fileURLToPath(new URL('../fixtures/recording-plugin.js', import.meta.url));
const SOURCES: Record<string, [string, string]> = {
  b10: ['127.0.0.10', 'b10.impulse.test'],
  b11: ['127.0.0.11', 'b11.impulse.test'],
};

let world: World;
let daemon: Daemon;
const greylisted = new Map<string, string[]>();

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'dest.test': '127.0.0.2', 'hooked.test': '127.0.0.2', 'grey.test': '127.0.0.3' }),
    sinks: {
      dest: { host: '127.0.0.2' },
      grey: {
        host: '127.0.0.3',
        // Greylisting: the first try of each recipient is deferred; the source address of every try is kept.
        behaviour: (ctx) => {
          if (ctx.stage !== 'rcpt' || !ctx.address) return undefined;
          const seen = greylisted.get(ctx.address) ?? [];
          greylisted.set(ctx.address, [...seen, ctx.session.remoteAddress]);
          return seen.length === 0 ? { code: 451, message: '4.7.1 greylisted, try again' } : undefined;
        },
      },
    },
  });
  daemon = await world.start({
    bindings: [
      { name: 'b10', bind_address: '127.0.0.10', ehlo_hostname: 'b10.impulse.test' },
      { name: 'b11', bind_address: '127.0.0.11', ehlo_hostname: 'b11.impulse.test' },
    ],
    binding_groups: [{ name: 'pool', bindings: ['b10', 'b11'] }],
    binding_rules: [{ sender_domain: 'ruled.test', binding: 'b11' }],
    plugins: [{ path: RECORDING_PLUGIN, options: { set_binding: { 'hooked.test': { binding: 'b10' } } } }],
  });
});

after(async () => {
  await world.close();
});

async function send(from: string, to: string, headers: Record<string, string> = {}): Promise<{ qid: string; msg: SinkMessage }> {
  const raw = makeMessage({ from, to: [to], headers });
  const qid = queueIdOf((await sendMail({ host: '127.0.0.1', port: world.intakePort, from, to: [to], raw })).response);
  const sink = to.endsWith('@grey.test') ? world.sinks.grey! : world.sinks.dest!;
  const [msg] = await sink.waitForRecipients([to]);
  return { qid, msg: msg! };
}

function assertFrom(msg: SinkMessage, binding: string): void {
  const [address, ehlo] = SOURCES[binding]!;
  assert.equal(msg.remoteAddress, address, `source address of ${msg.rcptTo.join(',')}`);
  assert.equal(msg.helo, ehlo, `EHLO name of ${msg.rcptTo.join(',')}`);
}

test('X-Impulse-Binding chooses the binding, and the header is removed before delivery', async () => {
  const a = await send('s@sender.test', 'h10@dest.test', { 'X-Impulse-Binding': 'b10' });
  const b = await send('s@sender.test', 'h11@dest.test', { 'X-Impulse-Binding': 'b11' });
  assertFrom(a.msg, 'b10');
  assertFrom(b.msg, 'b11');
  assert.doesNotMatch(a.msg.raw.toString('latin1'), /X-Impulse-Binding/i);
  const d = await daemon.waitForLog((r) => r.event === 'delivery' && r.qid === a.qid);
  assert.equal(d.binding, 'b10');
  const hook = await daemon.waitForLog((r) => r.event === 'hook_call' && r.hook === 'log_delivery' && r.args[0].qid === a.qid);
  assert.deepEqual([hook.args[0].recipients, hook.args[1]], [['h10@dest.test'], 'dest.test']);
  assert.match(hook.args[3], /^250 /);
});

test('a config rule by sender domain chooses the binding', async () => {
  assertFrom((await send('s@ruled.test', 'rule@dest.test')).msg, 'b11');
});

test('the set_binding hook chooses the binding when no header or rule did', async () => {
  const { qid, msg } = await send('s@sender.test', 'hook@hooked.test');
  assertFrom(msg, 'b10');
  const call = await daemon.waitForLog((r) => r.event === 'hook_call' && r.hook === 'set_binding' && r.args[0].qid === qid);
  assert.equal(call.args[1], 'hooked.test');
});

test('X-Impulse-Binding-Group picks a member by a hash of the message id, and a retry leaves from the same address', async () => {
  for (let i = 0; i < 4; i++) {
    const { qid, msg } = await send('s@sender.test', `g${i}@grey.test`, { 'X-Impulse-Binding-Group': 'pool' });
    const expected = ['b10', 'b11'][stableIndex(qid, 2)]!;
    assertFrom(msg, expected);
    await daemon.waitForLog((r) => r.event === 'hook_call' && r.hook === 'log_transient_failure' && r.args[0].qid === qid);
    const tries = greylisted.get(`g${i}@grey.test`)!;
    assert.deepEqual(tries, [SOURCES[expected]![0], SOURCES[expected]![0]], 'the deferred try and the retry share the source address');
  }
});

test('unassigned mail leaves from the default binding with the global EHLO name', async () => {
  const { msg } = await send('s@sender.test', 'plain@dest.test');
  assert.equal(msg.helo, 'out.impulse.test');
  assert.ok(!['127.0.0.10', '127.0.0.11'].includes(msg.remoteAddress));
});

test('an unknown binding in the header is a logged decision: the default binding', async () => {
  const { qid, msg } = await send('s@sender.test', 'unknown@dest.test', { 'X-Impulse-Binding': 'nosuch' });
  assert.equal(msg.helo, 'out.impulse.test');
  const decision = await daemon.waitForLog((r) => r.event === 'binding_unknown' && r.qid === qid);
  assert.match(decision.note, /unknown binding "nosuch"/);
  assert.equal(decision.decision, 'default');
});

test('default_binding: none refuses unassigned mail at intake with 451 and accepts assigned mail', async () => {
  await daemon.stop();
  daemon = await world.start({
    bindings: [{ name: 'b10', bind_address: '127.0.0.10', ehlo_hostname: 'b10.impulse.test' }],
    default_binding: 'none',
  });
  const raw = makeMessage({ from: 's@sender.test', to: ['none@dest.test'] });
  await assert.rejects(sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: ['none@dest.test'], raw }),
    (err: { response?: string }) => /^451 4\.3\.5 /.test(err.response ?? ''));
  await daemon.waitForLog((r) => r.event === 'binding_refused');
  const { msg } = await send('s@sender.test', 'assigned@dest.test', { 'X-Impulse-Binding': 'b10' });
  assertFrom(msg, 'b10');
});

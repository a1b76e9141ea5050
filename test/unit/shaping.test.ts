// Shaping rules: which replies a rule watches and what scope it holds (tables), triggers and
// extension, and the scheduler on a fake clock under suspend, set and bounce actions.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config/load.js';
import { reply } from '../../src/core/reply.js';
import { triggered } from '../../src/shaping/action.js';
import { type ObservedReply, compileRules, ruleWatches, targetCovers, targetKey, targetOf } from '../../src/shaping/rule.js';
import { TriggerCounts } from '../../src/shaping/trigger.js';
import { parseTrigger } from '../../src/config/units.js';
import { Harness, ownMx } from '../helpers/scheduler-harness.js';
import { configFrom } from '../helpers/options.js';

// Compiled tests run from dist/test/unit/; the shipped rules stay at the repository root.
const PROVIDERS = fileURLToPath(new URL('../../../config/shaping/providers.yaml', import.meta.url));
const GMAIL_RATE = '421 4.7.28 [192.0.2.201] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.';

const rules = (list: unknown[]) => compileRules(configFrom({ shaping_rules: list }).shaping_rules);
const seen = (text: string, more: Partial<ObservedReply> = {}): ObservedReply => {
  const m = /^(\d{3}) (\d\.\d+\.\d+) (.*)$/s.exec(text)!;
  return { binding: 'b1', domain: 'gmail.com', mxHost: 'gmail-smtp-in.l.google.com', phase: 'data', reply: reply(Number(m[1]), m[2]!, m[3]!), ...more };
};

test('a rule watches a reply when its pattern, phases, domains and MX hosts all allow it; never Impulse\'s own', () => {
  const [r] = rules([{ match: '4\\.7\\.28', action: 'suspend', duration: '1h', phase: ['connect', 'data'], domains: ['gmail.com', '/^googlemail\\./'], mx_hosts: ['google.com'] }]);
  const table: Array<[string, Partial<ObservedReply>, boolean]> = [
    ['the reply as given', {}, true],
    ['the same text in another case', { reply: reply(421, '4.7.28', GMAIL_RATE.slice(11).toUpperCase()) }, true],
    ['a phase the rule does not watch', { phase: 'rcpt' }, false],
    ['a domain by pattern', { domain: 'googlemail.com' }, true],
    ['another domain', { domain: 'example.com' }, false],
    ['an MX host under the suffix', { mxHost: 'ALT1.aspmx.l.google.com' }, true],
    ['an MX host that only ends in the same letters', { mxHost: 'mx.notgoogle.com' }, false],
    ['no MX host reached', { mxHost: undefined }, false],
    ['Impulse\'s own reply', { reply: reply(451, '4.7.28', '[internal] failed by shaping rule x') }, false],
    ['a connection that failed without a reply, in Impulse\'s words', { phase: 'connect', connectionFailure: true, reply: reply(421, '4.7.28', '[internal] gmail-smtp-in [192.0.2.9]:25: ECONNREFUSED') }, true],
    ['another reply', { reply: reply(421, '4.7.0', 'Try again later') }, false],
  ];
  for (const [name, more, want] of table) assert.equal(ruleWatches(r!, seen(GMAIL_RATE, more)), want, name);
});

test('each scope names what it holds, and covers queues by binding, domain or MX host', () => {
  const o = seen(GMAIL_RATE);
  const q = (binding: string, domain: string, mxHosts: string[]) => ({ binding, domain, mxHosts });
  const table: Array<[string, string, Array<[ReturnType<typeof q>, boolean]>]> = [
    ['binding_domain', 'binding_domain:b1:gmail.com', [[q('b1', 'gmail.com', []), true], [q('b2', 'gmail.com', []), false], [q('b1', 'other.test', []), false]]],
    ['domain', 'domain:gmail.com', [[q('b2', 'gmail.com', []), true], [q('b1', 'other.test', []), false]]],
    ['binding', 'binding:b1', [[q('b1', 'other.test', []), true], [q('b2', 'gmail.com', []), false]]],
    ['site', 'site:b1:gmail-smtp-in.l.google.com', [
      [q('b1', 'customer.example', ['gmail-smtp-in.l.google.com', 'alt1.gmail-smtp-in.l.google.com']), true],
      [q('b2', 'customer.example', ['gmail-smtp-in.l.google.com']), false], [q('b1', 'other.test', ['mx.other.test']), false]]],
  ];
  for (const [scope, key, cases] of table) {
    const [r] = rules([{ match: 'x', action: 'suspend', duration: '1h', scope }]);
    const t = targetOf(r!, o)!;
    assert.equal(targetKey(t), key);
    for (const [queue, want] of cases) assert.equal(targetCovers(t, queue), want, `${scope} over ${JSON.stringify(queue)}`);
  }
  const [site] = rules([{ match: 'x', action: 'suspend', duration: '1h', scope: 'site' }]);
  assert.equal(targetOf(site!, seen(GMAIL_RATE, { mxHost: undefined })), undefined, 'a site needs the MX host that answered');
});

test('triggers: N matching replies, within a period when given; the count starts again once the rule acts', () => {
  const counts = new TriggerCounts();
  const three = parseTrigger('3/5m')!;
  const hits = [0, 60_000, 400_000, 410_000, 420_000, 421_000].map((t) => counts.hit('k', three, t));
  // The first two fall out of the window before the third arrives; 400 s, 410 s, 420 s are three within five minutes.
  assert.deepEqual(hits, [false, false, false, false, true, false]);
  assert.deepEqual([parseTrigger(1), parseTrigger('2'), parseTrigger('0'), parseTrigger('3/x')], [{ count: 1, perMs: undefined }, { count: 2, perMs: undefined }, undefined, undefined]);
  const two = parseTrigger(2)!;
  assert.deepEqual([counts.hit('j', two, 0), counts.hit('j', two, 86_400_000), counts.hit('j', two, 86_400_001)], [false, true, false]);
});

test('a trigger while an action is in force extends it to the later end, never stacks', () => {
  const [r] = rules([{ name: 'rate', match: 'x', action: 'suspend', duration: '1h' }]);
  const t = targetOf(r!, seen(GMAIL_RATE))!;
  const first = triggered(undefined, r!, t, 'first', 0);
  assert.deepEqual([first.id, first.since, first.until], ['rate|binding_domain:b1:gmail.com', 0, 3_600_000]);
  const again = triggered(first, r!, t, 'second', 1_800_000);
  assert.deepEqual([again.since, again.until, again.reply], [0, 5_400_000, 'second']);
  const later = triggered(again, r!, t, 'third', 6_000_000);
  assert.deepEqual([later.since, later.until], [6_000_000, 9_600_000], 'one that ended starts anew');
});

function site(config: Record<string, unknown>, replyOfA: () => string): Harness {
  return new Harness({
    ...ownMx({ 'b.test': '192.0.2.2' }),
    mx: { 'a.test': [{ exchange: 'mx.shared.test', priority: 10 }], 'c.test': [{ exchange: 'mx.shared.test', priority: 10 }], 'b.test': [{ exchange: 'mx.b.test', priority: 10 }] },
    a: { 'mx.shared.test': ['192.0.2.1'], 'mx.b.test': ['192.0.2.2'] },
    config,
    servers: { '192.0.2.1': { sendMs: 10, reply: () => replyOfA() }, '192.0.2.2': { sendMs: 10 } },
  });
}

test('suspend: no new connection for the scope until the end, its mail parked without an attempt; other domains flow; then it delivers', async () => {
  let answer = GMAIL_RATE;
  const h = site({ max_outbound_connections: 1, shaping_rules: [{ name: 'gmail-rate', match: '4\\.7\\.28', action: 'suspend', duration: '1h' }] }, () => answer);
  h.submit('a.test', 10);
  h.submit('b.test', 10);
  await h.clock.advance(1000);
  const [action] = h.events('shaping_action');
  assert.deepEqual([action?.rule, action?.action, action?.scope, action?.binding, action?.domain, action?.reply], ['gmail-rate', 'suspend', 'binding_domain', 'default', 'a.test', GMAIL_RATE]);
  assert.equal(h.server('192.0.2.1').transactions.length, 1, 'one transaction got the reply; the rest of the mail waits');
  assert.equal(h.parked('shaping suspended').length, 9);
  assert.equal(h.delivered('b.test').length, 10);
  assert.deepEqual(h.shaper.active().map((a) => a.id), ['gmail-rate|binding_domain:default:a.test']);
  assert.ok(h.shapingStored.has('gmail-rate|binding_domain:default:a.test'), 'kept in the store');

  answer = '250 2.0.0 ok';
  await h.clock.advance(3_500_000);
  assert.equal(h.server('192.0.2.1').sessions.length, 1, 'no connection during the hour');
  await h.clock.advance(200_000);
  assert.equal(h.events('shaping_action_ended')[0]?.by, 'expiry');
  assert.equal(h.delivered('a.test').length, 9, 'the parked mail delivers once it ends');
  assert.equal(h.shapingStored.size, 0);
  await h.finish();
});

test('site scope: a reply for one domain holds every domain on that MX host from that binding', async () => {
  let answer = GMAIL_RATE;
  const h = site({ shaping_rules: [{ name: 'rate', match: '4\\.7\\.28', action: 'suspend', duration: '10m', scope: 'site' }] }, () => answer);
  h.submit('b.test', 1);
  await h.clock.advance(100);
  h.submit('a.test', 1);
  await h.clock.advance(1000);
  h.submit('c.test', 5);
  h.submit('b.test', 5);
  await h.clock.advance(1000);
  assert.equal(h.events('shaping_action')[0]?.mx_host, 'mx.shared.test');
  assert.equal(h.server('192.0.2.1').transactions.length, 1, 'the sibling on the same MX gets no connection');
  assert.equal(h.scheduler.state('c.test').domains[0]!.bindings[0]!.phase, 'held');
  assert.equal(h.delivered('b.test').length, 6, 'another MX flows');
  answer = '250 2.0.0 ok';
  await h.clock.advance(600_000);
  assert.equal(h.delivered('c.test').length, 5, 'delivered once the suspension ends');
  await h.finish();
});

test('set: the options overlay the scope for the duration (one connection, one message a minute), then fall away', async () => {
  let answer = GMAIL_RATE;
  const h = site({
    max_outbound_connections: 10, connection_allocation_aggressiveness: 'high',
    shaping_rules: [{ name: 'slow', match: '4\\.7\\.28', action: 'set', duration: '10m', options: { max_outbound_connections: 1, outbound_throttle_messages: '1/60' } }],
  }, () => answer);
  h.submit('a.test', 1);
  await h.clock.advance(1000);
  answer = '250 2.0.0 ok';
  assert.equal(h.options.of('default', 'a.test').max_outbound_connections, 1);
  assert.match(h.options.scopeOf('default', 'a.test', 'outbound_throttle_messages'), /^shaping slow\|binding_domain:default:a\.test$/);
  h.submit('a.test', 20);
  await h.clock.advance(300_000);
  const s = h.server('192.0.2.1');
  assert.equal(s.peak, 1);
  const during = h.delivered('a.test').length;
  assert.ok(during >= 4 && during <= 6, `about one a minute over five minutes, got ${during}`);
  await h.clock.advance(400_000);
  assert.equal(h.options.of('default', 'a.test').max_outbound_connections, 10, 'the overlay fell away');
  await h.clock.advance(60_000);
  assert.equal(h.delivered('a.test').length, 20);
  await h.finish();
});

test('a trigger of 3 acts on the third matching reply only; bounce fails the scope\'s held mail with the reply made permanent', async () => {
  const h = site({
    max_outbound_connections: 1, max_deliveries_per_connection: 1,
    shaping_rules: [{ name: 'blocked', match: 'S3150', trigger: 3, action: 'bounce' }],
  }, () => '550 5.7.1 Unfortunately, messages from [192.0.2.201] weren\'t sent. (S3150)');
  h.submit('a.test', 10);
  await h.clock.advance(10_000);
  assert.equal(h.server('192.0.2.1').transactions.length, 3, 'the third refusal triggered it; nothing more was sent');
  const bounced = h.attempted('shaping_bounce');
  assert.equal(bounced.length, 7);
  const r = bounced[0]!.outcome.kind === 'attempted' ? bounced[0]!.outcome.attempt.replies[0]!.reply : undefined;
  assert.deepEqual([r?.code, r?.enhanced], [550, '5.7.1']);
  assert.match(r?.text ?? '', /^\[internal\] failed by shaping rule blocked after the receiver said: 550 5\.7\.1 .*S3150/);
  assert.equal(h.shaper.active().length, 0, 'a bounce without duration leaves nothing in force');
  await h.finish();
});

test('actions kept in the store come back in force after a restart; an operator\'s clear ends them', async () => {
  const first = site({ shaping_rules: [{ name: 'rate', match: '4\\.7\\.28', action: 'suspend', duration: '1h', scope: 'domain' }] }, () => GMAIL_RATE);
  first.submit('a.test', 1);
  await first.clock.advance(1000);
  const kept = [...first.shapingStored.values()];
  assert.equal(kept.length, 1);
  await first.finish();

  const second = site({}, () => '250 2.0.0 ok');
  for (const a of kept) second.shapingStored.set(a.id, a);
  await second.shaper.restore();
  assert.equal(second.events('shaping_action_restored').length, 1);
  second.submit('a.test', 2);
  await second.clock.advance(1000);
  assert.equal(second.parked('shaping suspended').length, 2);
  assert.equal(second.shaper.clear({ domain: 'a.test' }).length, 1);
  await second.clock.advance(1000);
  assert.equal(second.events('shaping_action_ended')[0]?.by, 'operator');
  assert.equal(second.delivered('a.test').length, 2, 'a clear lets the parked mail go at once');
  await second.finish();
});

test('the shipped provider rules load, and each provider\'s real replies meet the rule meant for them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'impulse-shaping-'));
  const path = join(dir, 'impulse.yaml');
  writeFileSync(path, `shaping_rules_files: [${JSON.stringify(PROVIDERS)}]\n`);
  const loaded = loadConfig(path);
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('\n'));
  const compiled = compileRules(loaded.config.shaping_rules);
  const table: Array<[string, string, ObservedReply['phase'], string[]]> = [
    [GMAIL_RATE, 'gmail-smtp-in.l.google.com', 'data', ['google-rate-limited']],
    ['421 4.7.0 Try again later, closing connection. (EHLO) For more information, go to https://support.google.com/mail/answer/7720', 'alt1.aspmx.l.google.com', 'ehlo', ['google-too-many-connections']],
    ['421 4.7.0 [TSS04] Messages from 192.0.2.201 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes', 'mta5.am0.yahoodns.net', 'connect', ['yahoo-tss04']],
    ['421 4.7.0 [TS02] Messages from 192.0.2.201 temporarily deferred due to user complaints', 'mta6.am0.yahoodns.net', 'mail', ['yahoo-ts-deferral']],
    ['421 4.3.2 RP-001 (COL004-MC1F24) Unfortunately, some messages from 192.0.2.201 weren\'t sent. Please try again. We have limits for how many messages can be sent per hour and per day.', 'hotmail-com.olc.protection.outlook.com', 'rcpt', ['microsoft-rate-limited']],
    ['451 4.7.651 The mail server [192.0.2.201] has been temporarily rate limited due to IP reputation. (S3114)', 'outlook-com.olc.protection.outlook.com', 'rcpt', ['microsoft-rate-limited']],
    ['550 5.7.1 Unfortunately, messages from [192.0.2.201] weren\'t sent. Please contact your Internet service provider since part of their network is on our block list (S3150).', 'hotmail-com.olc.protection.outlook.com', 'mail', ['microsoft-blocked']],
    ['421 4.7.28 rate limited', 'mx.example.com', 'data', []],
  ];
  for (const [text, mxHost, phase, want] of table) {
    const o = seen(text, { mxHost, phase, domain: 'customer.example' });
    assert.deepEqual(compiled.filter((r) => ruleWatches(r, o)).map((r) => r.name), want, text);
  }
});

test('a connection refused without a reply reaches rules watching the connect phase, in Impulse\'s words', async () => {
  const h = new Harness({
    ...ownMx({ 'down.test': '192.0.2.7' }),
    config: { shaping_rules: [{ name: 'refused', match: 'ECONNREFUSED', phase: 'connect', action: 'suspend', duration: '10m' }] },
    servers: { '192.0.2.7': { refuse: true } },
  });
  h.submit('down.test', 3);
  await h.clock.advance(1000);
  const [action] = h.events('shaping_action');
  assert.deepEqual([action?.rule, action?.domain], ['refused', 'down.test']);
  assert.match(action?.reply, /^\d{3} \S+ \[internal\] .*ECONNREFUSED/);
  await h.finish();
});

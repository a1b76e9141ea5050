// MTA-STS (RFC 8461) end to end: policies published in the test DNS and served over HTTPS on a
// loopback address with a certificate from the test CA; sinks with and without STARTTLS and
// with good, self-signed and wrongly named certificates. Enforce defers what the policy rules
// out, testing delivers and logs it (a sibling riding another domain's session too), and a
// policy cached in Redis outlives a failed refresh.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Daemon, runCli } from '../helpers/daemon.js';
import type { Zone } from '../helpers/dns.js';
import { type PolicyServer, policyText, startPolicyServer } from '../helpers/policy-server.js';
import { freePort } from '../helpers/ports.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type TestCa, type TestCertificate, makeCa, makeCertificate } from '../helpers/tls.js';
import { type World, buildWorld, queueIdOf } from './world.js';

const POLICY_HOST = '127.0.0.119';

let world: World;
let ca: TestCa;
let policies: PolicyServer;

const keyPair = (c: TestCertificate) => ({ key: c.key, cert: c.cert });

/** A domain with one MX, mx.<domain>, at `address`, publishing an MTA-STS TXT record with `id` and its policy host. */
function stsDomain(domain: string, address: string, id: string | undefined): Zone {
  return {
    [domain]: { mx: [{ preference: 10, exchange: `mx.${domain}` }] },
    [`mx.${domain}`]: { a: [address] },
    ...(id === undefined ? {} : {
      [`_mta-sts.${domain}`]: { txt: [`v=STSv1; id=${id};`] },
      [`mta-sts.${domain}`]: { a: [POLICY_HOST] },
    }),
  };
}

before(async () => {
  ca = makeCa();
  const selfSigned = keyPair(makeCertificate('mx.testing.test'));
  world = await buildWorld({
    zone: {
      ...stsDomain('enforce.test', '127.0.0.120', '1'),
      ...stsDomain('mismatch.test', '127.0.0.121', '1'),
      ...stsDomain('plain.test', '127.0.0.122', '1'),
      ...stsDomain('badcert.test', '127.0.0.123', '1'),
      ...stsDomain('testing.test', '127.0.0.124', '1'),
      ...stsDomain('testing2.test', '127.0.0.124', '1'),
      ...stsDomain('unavailable.test', '127.0.0.122', '1'),
      ...stsDomain('webpki.test', '127.0.0.122', '1'),
      ...stsDomain('rotate.test', '127.0.0.125', '1'),
      ...stsDomain('ride.test', '127.0.0.124', '1'),
      ...stsDomain('ride2.test', '127.0.0.124', '1'),
    },
    sinks: {
      enforce: { host: '127.0.0.120', tls: keyPair(ca.sign('mx.enforce.test')) },
      mismatch: { host: '127.0.0.121', tls: keyPair(ca.sign('mx.mismatch.test')) },
      plain: { host: '127.0.0.122' },
      badcert: { host: '127.0.0.123', tls: keyPair(makeCertificate('mx.badcert.test')) },
      testing: { host: '127.0.0.124', tls: selfSigned },
      rotate: { host: '127.0.0.125', tls: keyPair(ca.sign('mx.rotate.test')) },
    },
    config: { tls_ca_file: ca.certPath },
  });
  policies = await startPolicyServer(POLICY_HOST, ca);
  policies.serve('enforce.test', { body: policyText('enforce', ['mx.enforce.test']) });
  policies.serve('mismatch.test', { body: policyText('enforce', ['*.elsewhere.test']) });
  policies.serve('plain.test', { body: policyText('enforce', ['mx.plain.test']) });
  policies.serve('badcert.test', { body: policyText('enforce', ['*.badcert.test']) });
  policies.serve('testing.test', { body: policyText('testing', ['*.elsewhere.test']) });
  policies.serve('testing2.test', { body: policyText('testing', ['mx.testing2.test']) });
  policies.serve('unavailable.test', { body: 'not found', status: 404 });
  policies.serve('webpki.test', { body: policyText('enforce', ['*.elsewhere.test']), wrongCertificate: true });
  policies.serve('rotate.test', { body: policyText('enforce', ['mx.rotate.test']) });
  policies.serve('ride.test', { body: policyText('testing', ['mx.ride.test']) });
  policies.serve('ride2.test', { body: policyText('testing', ['*.elsewhere.test']) });
});

after(async () => {
  await policies.close();
  await world.close();
});

const redisIn = (name: string) => ({ embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' });

async function inject(to: string): Promise<string> {
  const raw = makeMessage({ from: 's@sender.test', to: [to] });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw });
  return queueIdOf(res.response);
}

const deferral = (d: Daemon, qid: string) => d.waitForLog((r) => r.event === 'transient_failure' && r.qid === qid);

async function domainJson(d: Daemon, domain: string): Promise<Record<string, any>> {
  const r = await runCli(['domain', domain, '--json', '-c', d.configPath]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, any>;
}

test('enforce delivers only to allowed MXs over verified TLS and defers the rest with 4.7.5; testing delivers and logs; metrics count each verdict', async () => {
  const statusPort = await freePort('127.0.0.1');
  const d = await world.start({ redis: redisIn('modes'), metrics: { listen: `127.0.0.1:${statusPort}` } });
  try {
    await inject('a@enforce.test');
    const mismatch = await inject('b@mismatch.test');
    const plain = await inject('c@plain.test');
    const badcert = await inject('d@badcert.test');
    await inject('e@testing.test');
    await inject('f@testing2.test');
    await inject('g@unavailable.test');
    await inject('h@webpki.test');

    const [enforced] = await world.sinks.enforce!.waitForRecipients(['a@enforce.test']);
    assert.equal(enforced!.secure, true);
    const fetched = d.logs.find((r) => r.event === 'mta_sts_policy' && r.domain === 'enforce.test');
    assert.deepEqual([fetched?.id, fetched?.mode, fetched?.mx], ['1', 'enforce', ['mx.enforce.test']]);

    const ruledOut = await deferral(d, mismatch);
    assert.equal(ruledOut.reply, '451 4.7.5 [internal] MX host mx.mismatch.test is not allowed by the MTA-STS policy of mismatch.test (mx: *.elsewhere.test)');
    const noTls = await deferral(d, plain);
    assert.match(noTls.reply, /^451 4\.7\.5 \[internal\] the MTA-STS policy of plain\.test requires authenticated TLS and mx\.plain\.test \[127\.0\.0\.122\]:\d+ does not offer STARTTLS$/);
    const untrusted = await deferral(d, badcert);
    assert.match(untrusted.reply, /^451 4\.7\.5 \[internal\] the MTA-STS policy of badcert\.test requires authenticated TLS and TLS certificate verification failed for mx\.badcert\.test .*self-signed certificate/);
    assert.equal(world.sinks.mismatch!.messages.length, 0);
    assert.equal(world.sinks.badcert!.messages.length, 0);
    assert.equal(world.sinks.plain!.messages.filter((m) => m.rcptTo.includes('c@plain.test')).length, 0, 'never sent in plain text');

    // Testing mode: delivered as the options allow (opportunistic, unverified), each failure logged with its result type.
    await world.sinks.testing!.waitForRecipients(['e@testing.test', 'f@testing2.test']);
    const wouldFail = await d.waitForLogs((r) => r.event === 'tls_policy_failure', 2);
    const byDomain = Object.fromEntries(wouldFail.map((r) => [r.policy_domain, r]));
    assert.deepEqual([byDomain['testing.test']?.mode, byDomain['testing.test']?.result_type], ['testing', 'validation-failure']);
    assert.equal(byDomain['testing2.test']?.result_type, 'certificate-not-trusted');
    assert.equal(byDomain['testing2.test']?.mx_host, 'mx.testing2.test');

    // A policy published but not to be had (404, or an untrusted policy host) is as no policy: delivered in plain text here.
    await world.sinks.plain!.waitForRecipients(['g@unavailable.test', 'h@webpki.test']);
    const failed = Object.fromEntries(d.logs.filter((r) => r.event === 'mta_sts_fetch_failed').map((r) => [r.domain, r]));
    assert.match(failed['unavailable.test']?.reason, /HTTP status 404/);
    assert.equal(failed['webpki.test']?.result_type, 'sts-webpki-invalid');

    const enforceView = await domainJson(d, 'enforce.test');
    assert.deepEqual([enforceView.mta_sts.state, enforceView.mta_sts.mode, enforceView.mta_sts.id, enforceView.mta_sts.mx],
      ['policy', 'enforce', '1', ['mx.enforce.test']]);
    const unavailableView = await domainJson(d, 'unavailable.test');
    assert.deepEqual([unavailableView.mta_sts.state, unavailableView.mta_sts.result_type], ['unavailable', 'sts-policy-fetch-error']);
    const text = await runCli(['domain', 'mismatch.test', '-c', d.configPath]);
    assert.match(text.stdout, /MTA-STS:\s+enforce \(id 1\), mx: \*\.elsewhere\.test/);
    assert.match(text.stdout, /Last error:\s+451 4\.7\.5 \[internal\] MX host mx\.mismatch\.test is not allowed/);
    // Its mail deferred, the ready queue holds none and waits for nothing.
    assert.match(text.stdout, /^default\s+idle\s/m);

    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    const count = (labels: string) => Number(new RegExp(`^impulse_tls_policy_sessions_total\\{${labels}\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    assert.equal(count('policy_type="sts",policy_domain="enforce.test",mode="enforce",result="success"'), 1);
    assert.ok(count('policy_type="sts",policy_domain="mismatch.test",mode="enforce",result="validation-failure"') >= 1);
    assert.ok(count('policy_type="sts",policy_domain="plain.test",mode="enforce",result="starttls-not-supported"') >= 1);
    assert.ok(count('policy_type="sts",policy_domain="badcert.test",mode="enforce",result="certificate-not-trusted"') >= 1);
    assert.equal(count('policy_type="sts",policy_domain="testing.test",mode="testing",result="validation-failure"'), 1);
  } finally {
    await d.stop();
  }
});

test('a sibling under a testing policy rides another domain\'s session, and that session is judged and counted under its policy as its own would be', async () => {
  const statusPort = await freePort('127.0.0.1');
  const d = await world.start({ redis: redisIn('ride'), metrics: { listen: `127.0.0.1:${statusPort}` } });
  try {
    await inject('a@ride.test');
    const [first] = await world.sinks.testing!.waitForRecipients(['a@ride.test']);
    // ride2.test shares the MX address: its mail takes over ride.test's idle session rather than open one.
    await inject('b@ride2.test');
    const [second] = await world.sinks.testing!.waitForRecipients(['b@ride2.test']);
    assert.equal(second!.connectionId, first!.connectionId, 'ride2.test\'s mail rode ride.test\'s session');
    const wouldFail = await d.waitForLogs((r) => r.event === 'tls_policy_failure' && /^ride2?\.test$/.test(r.policy_domain), 2);
    const byDomain = Object.fromEntries(wouldFail.map((r) => [r.policy_domain, r]));
    assert.deepEqual([byDomain['ride.test']?.result_type, byDomain['ride.test']?.mx_host], ['certificate-not-trusted', 'mx.ride.test']);
    // Judged for its own MX name, which the policy does not allow, though the session was opened to ride.test's.
    assert.deepEqual([byDomain['ride2.test']?.result_type, byDomain['ride2.test']?.domain, byDomain['ride2.test']?.mx_host],
      ['validation-failure', 'ride2.test', 'mx.ride2.test']);
    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    const count = (labels: string) => Number(new RegExp(`^impulse_tls_policy_sessions_total\\{${labels}\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    assert.equal(count('policy_type="sts",policy_domain="ride2.test",mode="testing",result="validation-failure"'), 1);
    assert.equal(count('policy_type="sts",policy_domain="ride.test",mode="testing",result="certificate-not-trusted"'), 1);
  } finally {
    await d.stop();
  }
});

test('a policy cached in Redis serves the next daemon, outlives a failed refresh, and gives way when its id changes', async () => {
  const redis = redisIn('rotate');
  // The first daemon trusts the test CA through NODE_EXTRA_CA_CERTS alone.
  const first = await world.start({ redis, tls_ca_file: undefined }, { NODE_EXTRA_CA_CERTS: ca.certPath });
  try {
    await inject('1@rotate.test');
    await world.sinks.rotate!.waitForRecipients(['1@rotate.test']);
    assert.ok(first.logs.some((r) => r.event === 'mta_sts_policy' && r.domain === 'rotate.test'));
  } finally {
    await first.stop();
  }
  assert.equal(policies.requests.filter((h) => h === 'mta-sts.rotate.test').length, 1);

  // A new id, and a policy host that fails: the cached policy stays in force for the next daemon.
  world.dns.zone['_mta-sts.rotate.test'] = { txt: ['v=STSv1; id=2;'] };
  policies.serve('rotate.test', { body: 'unavailable', status: 503 });
  const second = await world.start({ redis });
  try {
    await inject('2@rotate.test');
    const [kept] = await world.sinks.rotate!.waitForRecipients(['2@rotate.test']);
    assert.equal(kept!.secure, true);
    const failed = second.logs.find((r) => r.event === 'mta_sts_fetch_failed' && r.domain === 'rotate.test');
    assert.deepEqual([failed?.id, failed?.kept], ['2', '1']);
    const view = await domainJson(second, 'rotate.test');
    assert.equal(view.mta_sts.id, '1');
    assert.match(view.mta_sts.stale, /HTTP status 503/);
  } finally {
    await second.stop();
  }

  // The policy host answers again under a new id, with a policy that rules the MX out.
  world.dns.zone['_mta-sts.rotate.test'] = { txt: ['v=STSv1; id=3;'] };
  policies.serve('rotate.test', { body: policyText('enforce', ['*.elsewhere.test']) });
  const third = await world.start({ redis });
  try {
    const qid = await inject('3@rotate.test');
    const deferred = await deferral(third, qid);
    assert.match(deferred.reply, /^451 4\.7\.5 \[internal\] MX host mx\.rotate\.test is not allowed by the MTA-STS policy of rotate\.test/);
    assert.equal((await domainJson(third, 'rotate.test')).mta_sts.id, '3');
  } finally {
    await third.stop();
  }
  assert.equal(world.sinks.rotate!.messages.length, 2);
});

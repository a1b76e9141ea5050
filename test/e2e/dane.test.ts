// DANE (RFC 7672) end to end: signed and unsigned zones in the test DNS (the AD bit as a
// validating resolver sets it), TLSA records computed by openssl from the sinks' certificates,
// self-signed certificates for DANE-EE and a private CA for DANE-TA, none of them trusted as
// WebPKI. Matching sessions deliver; a wrong digest, a server without STARTTLS or a failed TLSA
// lookup in a signed zone defer 451 4.7.5; unusable records make TLS mandatory, unauthenticated;
// an unsigned zone or dane: false means no DANE.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Daemon, runCli } from '../helpers/daemon.js';
import type { Zone } from '../helpers/dns.js';
import { type PolicyServer, policyText, startPolicyServer } from '../helpers/policy-server.js';
import { freePort } from '../helpers/ports.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type TestCa, type TestCertificate, makeCa, makeCertificate, tlsaAssociation } from '../helpers/tls.js';
import { type World, buildWorld, queueIdOf } from './world.js';

const POLICY_HOST = '127.0.0.139';

let world: World;
let ca: TestCa;
let policies: PolicyServer;
const certs: Record<string, TestCertificate> = {};

type Tlsa = { usage: number; selector: number; matchingType: number; data: Buffer };

/** A domain with one MX, mx.<domain>, at `address`; `signed` puts MX, A and TLSA in a signed zone. */
function daneDomain(domain: string, address: string, tlsa: Tlsa[] | 'SERVFAIL', signed = true): Zone {
  const secure = signed ? { secure: true } : {};
  return {
    [domain]: { mx: [{ preference: 10, exchange: `mx.${domain}` }], ...secure },
    [`mx.${domain}`]: { a: [address], ...secure },
    [`_${world.sinkPort}._tcp.mx.${domain}`]: tlsa === 'SERVFAIL' ? { rcode: 'SERVFAIL' } : { tlsa, ...secure },
  };
}

before(async () => {
  ca = makeCa('Impulse DANE-TA Test CA');
  certs.ee = makeCertificate('mx.dane-ee.test');
  certs.ta = ca.sign('mx.ta.test');
  certs.other = makeCertificate('mx.other.test');
  const withChain = (c: TestCertificate) => ({ key: c.key, cert: Buffer.concat([c.cert, ca.cert]) });
  world = await buildWorld({
    zone: {},
    sinks: {
      ee: { host: '127.0.0.130', tls: { key: certs.ee.key, cert: certs.ee.cert } },
      ta: { host: '127.0.0.131', tls: withChain(certs.ta) },
      other: { host: '127.0.0.132', tls: { key: certs.other.key, cert: certs.other.cert } },
      plain: { host: '127.0.0.133' },
    },
    config: { dane: true },
  });
  const eeSpki = { usage: 3, selector: 1, matchingType: 1, data: tlsaAssociation(certs.ee.cert, 1, 1) };
  const wrong = { usage: 3, selector: 1, matchingType: 1, data: tlsaAssociation(certs.ee.cert, 1, 1) };
  Object.assign(world.dns.zone, {
    ...daneDomain('dane-ee.test', '127.0.0.130', [eeSpki, { usage: 1, selector: 0, matchingType: 1, data: Buffer.alloc(32) }]),
    ...daneDomain('ta.test', '127.0.0.131', [{ usage: 2, selector: 0, matchingType: 1, data: tlsaAssociation(ca.cert, 0, 1) }]),
    // The certificate of mx.other.test is not the one these records name.
    ...daneDomain('wrong.test', '127.0.0.132', [wrong]),
    ...daneDomain('unsigned.test', '127.0.0.132', [wrong], false),
    ...daneDomain('off.test', '127.0.0.132', [wrong]),
    ...daneDomain('notls.test', '127.0.0.133', [eeSpki]),
    ...daneDomain('servfail.test', '127.0.0.133', 'SERVFAIL'),
    // Records, none usable (PKIX-EE): TLS is mandatory but authenticates nothing.
    ...daneDomain('unusable.test', '127.0.0.132', [{ usage: 1, selector: 1, matchingType: 1, data: Buffer.alloc(32) }]),
    ...daneDomain('unusable-plain.test', '127.0.0.133', [{ usage: 1, selector: 1, matchingType: 1, data: Buffer.alloc(32) }]),
    // DANE vouches for the MX; the MTA-STS policy would rule it out.
    ...daneDomain('both.test', '127.0.0.130', [eeSpki]),
    '_mta-sts.both.test': { txt: ['v=STSv1; id=1;'] },
    'mta-sts.both.test': { a: [POLICY_HOST] },
  });
  policies = await startPolicyServer(POLICY_HOST, ca);
  policies.serve('both.test', { body: policyText('enforce', ['*.elsewhere.test']) });
});

after(async () => {
  await policies.close();
  await world.close();
});

async function inject(to: string): Promise<string> {
  const raw = makeMessage({ from: 's@sender.test', to: [to] });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw });
  return queueIdOf(res.response);
}

const deferral = (d: Daemon, qid: string) => d.waitForLog((r) => r.event === 'transient_failure' && r.qid === qid);

test('DANE-EE and DANE-TA records authenticate self-signed and private-CA servers; a mismatch, no STARTTLS or a failed TLSA lookup defers 4.7.5', async () => {
  const statusPort = await freePort('127.0.0.1');
  const d = await world.start({
    redis: { embedded: true, dir: join(world.dir, 'redis-dane'), appendfsync: 'everysec' },
    metrics: { listen: `127.0.0.1:${statusPort}` },
    domains: { 'off.test': { dane: false } },
  });
  const p = world.sinkPort;
  try {
    await inject('a@dane-ee.test');
    await inject('b@ta.test');
    const wrong = await inject('c@wrong.test');
    await inject('d@unsigned.test');
    await inject('e@off.test');
    const notls = await inject('f@notls.test');
    const servfail = await inject('g@servfail.test');
    await inject('h@both.test');
    await inject('i@unusable.test');
    const unusablePlain = await inject('j@unusable-plain.test');

    const [ee] = await world.sinks.ee!.waitForRecipients(['a@dane-ee.test']);
    assert.equal(ee!.secure, true);
    const [ta] = await world.sinks.ta!.waitForRecipients(['b@ta.test']);
    assert.equal(ta!.secure, true);
    const [both] = await world.sinks.ee!.waitForRecipients(['h@both.test']);
    assert.equal(both!.secure, true, 'DANE takes precedence over the MTA-STS policy');

    const mismatch = await deferral(d, wrong);
    assert.match(mismatch.reply, new RegExp(`^451 4\\.7\\.5 \\[internal\\] DANE \\(TLSA _${p}\\._tcp\\.mx\\.wrong\\.test\\) requires authenticated TLS and TLS certificate verification failed for mx\\.wrong\\.test \\[127\\.0\\.0\\.132\\]:${p}: .*mx\\.wrong\\.test`));
    const plain = await deferral(d, notls);
    assert.match(plain.reply, /^451 4\.7\.5 \[internal\] DANE .* requires authenticated TLS and mx\.notls\.test \[127\.0\.0\.133\]:\d+ does not offer STARTTLS$/);
    const failed = await deferral(d, servfail);
    assert.match(failed.reply, new RegExp(`^451 4\\.7\\.5 \\[internal\\] DANE: TLSA lookup of _${p}\\._tcp\\.mx\\.servfail\\.test failed: .*, and mx\\.servfail\\.test is in a signed zone$`));
    // The address may already be marked failed by notls.test's attempt: the connection failure itself says why.
    await deferral(d, unusablePlain);
    const refused = await d.waitForLog((r) => r.event === 'connection_failure' && r.domain === 'unusable-plain.test' && /^451 4\.7\.5/.test(r.reply));
    assert.match(refused.reply, /^451 4\.7\.5 \[internal\] DANE .* does not offer STARTTLS$/);
    const [unusable] = await world.sinks.other!.waitForRecipients(['i@unusable.test']);
    assert.equal(unusable!.secure, true);
    assert.deepEqual(world.sinks.plain!.messages.map((m) => m.rcptTo), [], 'nothing in plain text');

    // An unsigned zone has no DANE, and dane: false ignores it: both delivered as the options say.
    await world.sinks.other!.waitForRecipients(['d@unsigned.test', 'e@off.test']);
    assert.equal(world.sinks.other!.messages.filter((m) => m.rcptTo.includes('c@wrong.test')).length, 0);

    const detail = await runCli(['domain', 'dane-ee.test', '-c', d.configPath]);
    assert.equal(detail.code, 0, detail.stderr);
    assert.match(detail.stdout, /^DANE:\s+MX records signed$/m);
    assert.match(detail.stdout, /^DANE mx\.dane-ee\.test:\s+1 usable TLSA record\(s\): TLS must match them$/m);
    const unsigned = JSON.parse((await runCli(['domain', 'unsigned.test', '--json', '-c', d.configPath])).stdout) as { dane: { mx: string } };
    assert.equal(unsigned.dane.mx, 'insecure');

    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    const count = (labels: string) => Number(new RegExp(`^impulse_tls_policy_sessions_total\\{${labels}\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    assert.equal(count('policy_type="tlsa",policy_domain="dane-ee.test",mode="enforce",result="success"'), 1);
    assert.ok(count('policy_type="tlsa",policy_domain="wrong.test",mode="enforce",result="tlsa-invalid"') >= 1);
    assert.ok(count('policy_type="tlsa",policy_domain="servfail.test",mode="enforce",result="dnssec-invalid"') >= 1);
    assert.ok(count('policy_type="tlsa",policy_domain="notls.test",mode="enforce",result="starttls-not-supported"') >= 1);
  } finally {
    await d.stop();
  }
});

// Outbound TLS policy against real certificates: tls_verify (no, ca, host) with a test CA trusted
// through tls_ca_file, per domain; tls_ifavailable_fallback against a server whose TLS handshake
// is broken. Every verification or handshake failure defers with 451 4.7.x and reaches no sink.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { type BrokenStartTls, startBrokenStartTls } from '../helpers/broken-starttls.js';
import { type Daemon, startDaemon } from '../helpers/daemon.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type TestCa, type TestCertificate, makeCa, makeCertificate } from '../helpers/tls.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

let world: World;
let ca: TestCa;
const broken: Record<string, BrokenStartTls> = {};

const keyPair = (c: TestCertificate) => ({ key: c.key, cert: c.cert });

before(async () => {
  ca = makeCa();
  world = await buildWorld({
    zone: {
      ...mxZone({
        'good.test': '127.0.0.110', 'wrongname.test': '127.0.0.111', 'selfsigned.test': '127.0.0.112', 'expired.test': '127.0.0.113',
        'fallback.test': '127.0.0.115', 'nofallback.test': '127.0.0.116', 'required.test': '127.0.0.117',
      }),
      // Hosted on selfsigned.test's MX: a sibling domain with a laxer policy.
      'lax.test': { mx: [{ preference: 10, exchange: 'mx.selfsigned.test' }] },
      // The first MX's certificate names another host; the second's names it.
      'twomx.test': { mx: [{ preference: 10, exchange: 'mx1.twomx.test' }, { preference: 20, exchange: 'mx2.twomx.test' }] },
      'mx1.twomx.test': { a: ['127.0.0.114'] },
      'mx2.twomx.test': { a: ['127.0.0.118'] },
    },
    sinks: {
      good: { host: '127.0.0.110', tls: keyPair(ca.sign('mx.good.test')) },
      wrongname: { host: '127.0.0.111', tls: keyPair(ca.sign('other-name.test')) },
      selfsigned: { host: '127.0.0.112', tls: keyPair(makeCertificate('mx.selfsigned.test')) },
      expired: { host: '127.0.0.113', tls: keyPair(ca.sign('mx.expired.test', { expired: true })) },
      twomx1: { host: '127.0.0.114', tls: keyPair(ca.sign('not-mx1.test')) },
      twomx2: { host: '127.0.0.118', tls: keyPair(ca.sign('mx2.twomx.test')) },
    },
    config: { tls_ca_file: ca.certPath },
  });
  for (const [name, address] of [['fallback', '127.0.0.115'], ['nofallback', '127.0.0.116'], ['required', '127.0.0.117']] as const) {
    broken[name] = await startBrokenStartTls(address, world.sinkPort);
  }
});

after(async () => {
  await Promise.all(Object.values(broken).map((b) => b.close()));
  await world.close();
});

/** Each daemon its own Redis, so mail one test leaves deferred is not retried under the next one's policy. */
function start(name: string, overrides: Record<string, unknown>): Promise<Daemon> {
  return world.start({ redis: { embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' }, ...overrides });
}

async function inject(to: string): Promise<string> {
  const raw = makeMessage({ from: 's@sender.test', to: [to] });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw });
  return queueIdOf(res.response);
}

function deferral(d: Daemon, qid: string) {
  return d.waitForLog((r) => r.event === 'transient_failure' && r.qid === qid);
}

function received(sink: { messages: Array<{ rcptTo: string[] }> }, rcpt: string): number {
  return sink.messages.filter((m) => m.rcptTo.includes(rcpt)).length;
}

test('tls_verify: host per domain: the MX named by its CA-signed certificate gets TLS, another name defers 4.7.5 until the policy is relaxed', async () => {
  const d = await start('host', {
    domains: {
      'good.test': { tls: 'required', tls_verify: 'host' },
      'wrongname.test': { tls: 'required', tls_verify: 'host' },
      'twomx.test': { tls: 'required', tls_verify: 'host' },
    },
  });
  try {
    await inject('a@good.test');
    const wrongQid = await inject('b@wrongname.test');
    await inject('c@selfsigned.test');
    await inject('d@twomx.test');

    const [good] = await world.sinks.good!.waitForRecipients(['a@good.test']);
    assert.equal(good!.secure, true);
    // The global policy (ifavailable, no verification) still applies to other domains.
    const [lax] = await world.sinks.selfsigned!.waitForRecipients(['c@selfsigned.test']);
    assert.equal(lax!.secure, true);

    const deferred = await deferral(d, wrongQid);
    assert.match(deferred.reply,
      /^451 4\.7\.5 \[internal\] TLS certificate verification failed for mx\.wrongname\.test \[127\.0\.0\.111\]:\d+: Hostname\/IP does not match certificate's altnames/);
    assert.deepEqual(deferred.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
    assert.equal(deferred.action, 'requeue1');
    const failure = d.logs.find((r) => r.event === 'connection_failure' && r.domain === 'wrongname.test');
    assert.equal(failure?.reply, deferred.reply);
    assert.equal(received(world.sinks.wrongname!, 'b@wrongname.test'), 0, 'never sent in plain text');

    // A verification failure at one MX moves on to the next, which verifies.
    const [viaSecond] = await world.sinks.twomx2!.waitForRecipients(['d@twomx.test']);
    assert.equal(viaSecond!.secure, true);
    const firstMx = d.logs.find((r) => r.event === 'connection_failure' && r.domain === 'twomx.test');
    assert.equal(firstMx?.mx_host, 'mx1.twomx.test');
    assert.deepEqual(firstMx?.flags, ['CONN_ERROR_CONNECT']);
    assert.match(firstMx?.reply, /^451 4\.7\.5 .*not-mx1\.test/);
    assert.equal(world.sinks.twomx1!.messages.length, 0);

    // Trusting the chain only (tls_verify: ca) accepts the other name: the deferred mail goes out.
    const doc = parse(readFileSync(d.configPath, 'utf8')) as Record<string, any>;
    doc.domains['wrongname.test'].tls_verify = 'ca';
    writeFileSync(d.configPath, stringify(doc));
    d.proc.kill('SIGHUP');
    await d.waitForLog((r) => r.event === 'reloaded');
    const [relaxed] = await world.sinks.wrongname!.waitForRecipients(['b@wrongname.test']);
    assert.equal(relaxed!.secure, true);
  } finally {
    await d.stop();
  }
});

test('tls_verify: ca refuses self-signed and expired certificates even under tls: ifavailable; a sibling with tls_verify: no does not carry them', async () => {
  const d = await start('ca', { tls_verify: 'ca', idle_timeout: '30s', domains: { 'lax.test': { tls_verify: 'no' } } });
  try {
    // lax.test leaves an idle, unverified TLS connection to mx.selfsigned.test behind.
    await inject('x@lax.test');
    const [lax] = await world.sinks.selfsigned!.waitForRecipients(['x@lax.test']);
    assert.equal(lax!.secure, true);

    const selfQid = await inject('y@selfsigned.test');
    const expiredQid = await inject('z@expired.test');
    const self = await deferral(d, selfQid);
    assert.match(self.reply, /^451 4\.7\.5 \[internal\] TLS certificate verification failed for mx\.selfsigned\.test \[127\.0\.0\.112\]:\d+: self-signed certificate$/);
    assert.deepEqual(self.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
    const expired = await deferral(d, expiredQid);
    assert.match(expired.reply, /^451 4\.7\.5 \[internal\] TLS certificate verification failed for mx\.expired\.test \[127\.0\.0\.113\]:\d+: certificate has expired$/);
    assert.equal(received(world.sinks.selfsigned!, 'y@selfsigned.test'), 0);
    assert.equal(world.sinks.expired!.messages.length, 0);
    assert.equal(d.logs.filter((r) => r.event === 'tls_fallback').length, 0, 'a verification failure never falls back to plain text');
  } finally {
    await d.stop();
  }
});

test('a broken TLS handshake: tls: ifavailable falls back to plain text, unless tls_ifavailable_fallback is false or tls is required', async () => {
  const d = await start('handshake', {
    domains: { 'nofallback.test': { tls_ifavailable_fallback: false }, 'required.test': { tls: 'required' } },
  });
  try {
    const fallbackQid = await inject('a@fallback.test');
    const noFallbackQid = await inject('b@nofallback.test');
    const requiredQid = await inject('c@required.test');

    await broken.fallback!.waitForRecipients(['a@fallback.test']);
    assert.ok(broken.fallback!.startTls >= 1, 'TLS was tried first');
    const fellBack = await d.waitForLog((r) => r.event === 'tls_fallback' && r.domain === 'fallback.test');
    assert.equal(fellBack.mx_host, 'mx.fallback.test');
    // OpenSSL's reason alone, one line, not its error string with codes and source file.
    assert.match(fellBack.reason, /^[a-z][a-z ]+$/);
    const delivered = await d.waitForLog((r) => r.event === 'delivery' && r.qid === fallbackQid);
    assert.match(delivered.reply, /^250 /);

    const noFallback = await deferral(d, noFallbackQid);
    assert.match(noFallback.reply,
      /^451 4\.7\.5 \[internal\] TLS handshake with mx\.nofallback\.test \[127\.0\.0\.116\]:\d+ failed and tls_ifavailable_fallback is false: [a-z][a-z ]+$/);
    assert.deepEqual(noFallback.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
    const required = await deferral(d, requiredQid);
    assert.match(required.reply, /^451 4\.7\.5 \[internal\] TLS handshake with mx\.required\.test \[127\.0\.0\.117\]:\d+ failed and tls is required: [a-z][a-z ]+$/);
    for (const name of ['nofallback', 'required'] as const) {
      assert.ok(broken[name]!.startTls >= 1, `${name}: TLS was tried`);
      assert.equal(broken[name]!.messages.length, 0, `${name}: nothing sent in plain text`);
    }
    assert.deepEqual(d.logs.filter((r) => r.event === 'tls_fallback' && r.domain !== 'fallback.test'), []);
  } finally {
    await d.stop();
  }
});

test('an unreadable or certificate-less tls_ca_file stops the start with its name', async () => {
  const missing = join(world.dir, 'missing-ca.pem');
  const notPem = join(world.dir, 'not-a-ca.pem');
  writeFileSync(notPem, 'just text\n');
  for (const [file, why] of [[missing, /cannot read tls_ca_file .*missing-ca\.pem: ENOENT/], [notPem, /tls_ca_file .*not-a-ca\.pem holds no PEM certificate/]] as const) {
    const d = await startDaemon({ ...world.config, tls_ca_file: file }, { waitReady: false });
    const exit = await d.exited;
    assert.equal(exit.code, 1);
    assert.match(d.stderr, why);
  }
});

// Interop B: swaks sessions at Impulse's intake (PIPELINING, STARTTLS with a certificate from a test CA, AUTH PLAIN after STARTTLS), checked by exit code, transcript and the copy at smtp-sink.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CLI_PATH } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { type TestCa, makeCa } from '../helpers/tls.js';
import { queuedAs, swaks } from './swaks.js';
import { type Tap, startTap } from './tap.js';
import { type Interop, STANDARD_SINKS, buildInterop, stripReceived } from './world.js';

const OUTSIDER = '127.0.0.9';
const ALICE = { user: 'alice', pass: 'alice-swaks-51d0' };

let net: Interop;
let ca: TestCa;
let tap: Tap;
let port: number;

before(async () => {
  ca = makeCa();
  const leaf = ca.sign('impulse.test');
  net = await buildInterop({
    sinks: { full: STANDARD_SINKS.full! },
    daemonConfig: (world) => {
      // The users file as an operator makes it: one line of `impulse hash-password`.
      const line = execFileSync(process.execPath, [CLI_PATH, 'hash-password', ALICE.user], { input: `${ALICE.pass}\n`, encoding: 'utf8' });
      writeFileSync(join(world.dir, 'smtp-users'), line);
      return {
        listen: [{
          address: '127.0.0.1', port: world.intakePort, relay_from: ['127.0.0.1/32'],
          tls: { cert: leaf.certPath, key: leaf.keyPath }, auth: { users_file: 'smtp-users' },
        }],
      };
    },
  });
  port = net.world.intakePort;
  tap = await startTap({ host: '127.0.0.1', port: await freePort('127.0.0.1'), target: { host: '127.0.0.1', port } });
});

after(async () => {
  await tap?.close();
  await net?.close();
});

/** Waits for Impulse's delivery of this queue id and returns smtp-sink's copy of it. */
async function deliveredCopy(qid: string) {
  await net.daemon.waitForLog((r) => r.event === 'delivery' && r.qid === qid);
  const copies = net.sinks.full!.dumps().filter((d) => stripReceived(d.message).received[0]?.includes(`id ${qid}`));
  assert.equal(copies.length, 1, `copies of ${qid} at smtp-sink`);
  return copies[0]!;
}

test('swaks --pipeline: MAIL, both RCPTs and DATA go out in one batch, Impulse answers each in order, the message is delivered', async () => {
  const to = ['piped-1@a.test', 'piped-2@a.test'];
  const r = await swaks('127.0.0.1', tap.port, ['--pipeline', '--helo', 'swaks.test', '--from', 's@sender.test', '--to', to.join(',')]);
  assert.equal(r.code, 0, r.transcript);
  // swaks prints the pipelined commands together, then the four replies.
  assert.match(r.transcript, /^ -> MAIL FROM:<s@sender\.test>\n -> RCPT TO:<piped-1@a\.test>\n -> RCPT TO:<piped-2@a\.test>\n -> DATA\n<- {2}250 .*\n<- {2}250 .*\n<- {2}250 .*\n<- {2}354 /m);
  // On the wire: one batch, before any reply.
  const [session] = await tap.waitForSessions(1);
  assert.deepEqual(tap.commandBatches(session!).slice(0, 3), [
    ['EHLO swaks.test'],
    ['MAIL FROM:<s@sender.test>', 'RCPT TO:<piped-1@a.test>', 'RCPT TO:<piped-2@a.test>', 'DATA'],
    ['<content>', '.'],
  ]);
  const qid = queuedAs(r.transcript);
  assert.ok(qid, r.transcript);
  const copy = await deliveredCopy(qid);
  assert.deepEqual(copy.rcpts.map((x) => x.address).sort(), to);
  const { received, rest } = stripReceived(copy.message);
  assert.match(received[0]!, /^Received: from swaks\.test \(.*\[127\.0\.0\.1\]\)\n\tby impulse\.test \(Impulse\) with ESMTP id /);
  assert.match(rest.toString('utf8'), /^X-Mailer: swaks v\S+ /m);
});

test('swaks --tls --tls-verify with the test CA: STARTTLS, a second EHLO without STARTTLS, the transaction inside TLS, delivered as ESMTPS', async () => {
  const r = await swaks('127.0.0.1', port, ['--tls', '--tls-verify', '--tls-ca-path', ca.certPath, '--from', 's@sender.test', '--to', 'tls@a.test']);
  assert.equal(r.code, 0, r.transcript);
  assert.match(r.transcript, /^<- {2}250-STARTTLS$/m, 'STARTTLS offered before TLS');
  assert.match(r.transcript, /^ -> STARTTLS\n<- {2}220 .*\n=== TLS started with cipher TLSv1\.[23]/m);
  assert.match(r.transcript, /^=== TLS peer DN="\/CN=impulse\.test"$/m);
  const afterTls = r.transcript.slice(r.transcript.indexOf('=== TLS started'));
  assert.match(afterTls, /^ ~> EHLO /m);
  assert.doesNotMatch(afterTls, /STARTTLS/, 'STARTTLS is not offered again inside TLS');
  assert.match(afterTls, /^ ~> MAIL FROM:<s@sender\.test>\n<~ {2}250 /m);
  const qid = queuedAs(r.transcript);
  assert.ok(qid, r.transcript);
  const copy = await deliveredCopy(qid);
  assert.match(stripReceived(copy.message).received[0]!, /with ESMTPS id /);
});

test('swaks --tls-verify with a CA that did not sign the certificate: TLS fails (exit 29), nothing is sent', async () => {
  const other = makeCa('Another Test CA');
  const r = await swaks('127.0.0.1', port, ['--tls', '--tls-verify', '--tls-ca-path', other.certPath, '--from', 's@sender.test', '--to', 'never@a.test']);
  assert.equal(r.code, 29, r.transcript);
  assert.match(r.transcript, /certificate verify failed/);
  assert.doesNotMatch(r.transcript, /MAIL FROM/);
});

test('swaks AUTH PLAIN after STARTTLS from outside relay_from: 235, accepted, delivered as ESMTPSA and logged with the user', async () => {
  const r = await swaks('127.0.0.1', port, ['--local-interface', OUTSIDER, '--tls', '--auth', 'PLAIN', '--auth-user', ALICE.user,
    '--auth-password', ALICE.pass, '--from', 'alice@sender.test', '--to', 'authed@a.test']);
  assert.equal(r.code, 0, r.transcript);
  assert.doesNotMatch(r.transcript, /^ -> AUTH /m, 'no AUTH before TLS');
  assert.match(r.transcript, /^=== TLS started[^]*^ ~> AUTH PLAIN \S+\n<~ {2}235 /m);
  const qid = queuedAs(r.transcript);
  assert.ok(qid, r.transcript);
  const copy = await deliveredCopy(qid);
  assert.match(stripReceived(copy.message).received[0]!, /with ESMTPSA id /);
  const reception = await net.daemon.waitForLog((rec) => rec.event === 'reception' && rec.qid === qid);
  assert.equal(reception.user, ALICE.user);
  assert.equal(reception.client, OUTSIDER);
});

test('swaks from outside relay_from without a good AUTH: 530 for MAIL (exit 23), 538 for AUTH before STARTTLS and 535 5.7.8 for a wrong password (exit 28)', async () => {
  const base = ['--local-interface', OUTSIDER, '--from', 'mallory@sender.test', '--to', 'refused@a.test'];
  const noAuth = await swaks('127.0.0.1', port, base);
  assert.equal(noAuth.code, 23, noAuth.transcript);
  assert.match(noAuth.transcript, /^<\*\* 530 5\.7\.0 /m);
  const plainText = await swaks('127.0.0.1', port, [...base, '--auth', 'PLAIN', '--auth-user', ALICE.user, '--auth-password', ALICE.pass]);
  assert.equal(plainText.code, 28, plainText.transcript);
  assert.match(plainText.transcript, /^<\*\* 538 /m);
  const wrong = await swaks('127.0.0.1', port, [...base, '--tls', '--auth', 'PLAIN', '--auth-user', ALICE.user, '--auth-password', 'not-the-password']);
  assert.equal(wrong.code, 28, wrong.transcript);
  assert.match(wrong.transcript, /^<~\* 535 5\.7\.8 /m);
  for (const t of [noAuth, plainText, wrong]) assert.equal(queuedAs(t.transcript), undefined);
});

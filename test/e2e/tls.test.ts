// STARTTLS on both sides: outbound per the `tls` policy, inbound on a listener with a certificate.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { makeMessage, sendMail, smtpDialogue } from '../helpers/smtp-client.js';
import { makeCertificate } from '../helpers/tls.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

let world: World;

before(async () => {
  const cert = makeCertificate('mx.tls.test');
  world = await buildWorld({
    zone: mxZone({ 'tls.test': '127.0.0.2', 'plain.test': '127.0.0.3' }),
    sinks: {
      tls: { host: '127.0.0.2', tls: { key: cert.key, cert: cert.cert } },
      plain: { host: '127.0.0.3' },
    },
  });
});

after(async () => {
  await world.close();
});

async function inject(to: string): Promise<string> {
  const raw = makeMessage({ from: 's@sender.test', to: [to] });
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw });
  return queueIdOf(res.response);
}

test('tls: ifavailable uses STARTTLS where offered and plain SMTP elsewhere', async () => {
  const daemon = await world.start({ tls: 'ifavailable' });
  await inject('a@tls.test');
  await inject('b@plain.test');
  const [viaTls] = await world.sinks.tls!.waitForRecipients(['a@tls.test']);
  const [viaPlain] = await world.sinks.plain!.waitForRecipients(['b@plain.test']);
  assert.equal(viaTls!.secure, true);
  assert.equal(viaPlain!.secure, false);
  await daemon.stop();
});

test('tls: required defers mail to a server without STARTTLS and still delivers over TLS', async () => {
  const daemon = await world.start({ tls: 'required' });
  const plainQid = await inject('c@plain.test');
  await inject('d@tls.test');
  const [viaTls] = await world.sinks.tls!.waitForRecipients(['d@tls.test']);
  assert.equal(viaTls!.secure, true);
  const deferral = await daemon.waitForLog((r) => r.event === 'transient_failure' && r.qid === plainQid);
  assert.match(deferral.reply, /^451 4\.7\.4 \[internal\] TLS is required but mx\.plain\.test \[127\.0\.0\.3\]:\d+ does not offer STARTTLS$/);
  assert.deepEqual(deferral.flags, ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1']);
  assert.equal(world.sinks.plain!.messages.filter((m) => m.rcptTo.includes('c@plain.test')).length, 0);
  await daemon.stop();
});

test('tls: no never starts TLS', async () => {
  const daemon = await world.start({ tls: 'no' });
  await inject('e@tls.test');
  const [msg] = await world.sinks.tls!.waitForRecipients(['e@tls.test']);
  assert.equal(msg!.secure, false);
  await daemon.stop();
});

test('a listener with a certificate offers STARTTLS and records ESMTPS; one without does not offer it', async () => {
  const cert = makeCertificate('impulse.test');
  const daemon = await world.start({
    listen: [{ address: '127.0.0.1', port: world.intakePort, tls: { cert: cert.certPath, key: cert.keyPath } }],
    tls: 'no',
  });
  const ehlo = await smtpDialogue({ host: '127.0.0.1', port: world.intakePort, lines: ['EHLO client.test', 'QUIT'] });
  assert.match(ehlo[1]!, /STARTTLS/);
  const conn = new SMTPConnection({ host: '127.0.0.1', port: world.intakePort, requireTLS: true, tls: { rejectUnauthorized: false } });
  await new Promise<void>((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => resolve());
  });
  const raw = makeMessage({ from: 's@sender.test', to: ['f@tls.test'] });
  const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) =>
    conn.send({ from: 's@sender.test', to: ['f@tls.test'] }, raw, (err, i) => (err ? reject(err) : resolve(i))));
  conn.quit();
  assert.equal(conn.secure, true);
  queueIdOf(info.response);
  const [msg] = await world.sinks.tls!.waitForRecipients(['f@tls.test']);
  assert.match(msg!.raw.toString('latin1'), /^Received: [^]*? with ESMTPS id /);
  await daemon.stop();

  const plain = await world.start();
  const noTls = await smtpDialogue({ host: '127.0.0.1', port: world.intakePort, lines: ['EHLO client.test', 'QUIT'] });
  assert.doesNotMatch(noTls[1]!, /STARTTLS/);
  await plain.stop();
});

test('a domain-scoped option applies to that domain only: tls required for plain.test', async () => {
  const daemon = await world.start({ tls: 'ifavailable', domains: { 'plain.test': { tls: 'required' } } });
  const deferredQid = await inject('g@plain.test');
  await inject('h@tls.test');
  await world.sinks.tls!.waitForRecipients(['h@tls.test']);
  const deferral = await daemon.waitForLog((r) => r.event === 'transient_failure' && r.qid === deferredQid);
  assert.match(deferral.reply, /^451 4\.7\.4 .* does not offer STARTTLS$/);
  assert.equal(world.sinks.plain!.messages.filter((m) => m.rcptTo.includes('g@plain.test')).length, 0);
  await daemon.stop();
});

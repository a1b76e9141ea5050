// The intake against clients it does not trust: SMTP AUTH over STARTTLS for clients outside
// relay_from, the users file and its reload, `impulse hash-password`, and the session limits
// (unauthenticated commands, clients, command length, idle time).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { parseHash, verifyPassword } from '../../src/intake/password-hash.js';
import { CLI_PATH, type CliResult, type Daemon, runCli, startDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { RawSmtp } from '../helpers/raw-smtp.js';
import { makeMessage } from '../helpers/smtp-client.js';
import { makeCertificate } from '../helpers/tls.js';
import { type World, buildWorld, mxZone, splitReceived } from './world.js';

const OUTSIDER = '127.0.0.9';
const ALICE = { user: 'alice', pass: 'alice-secret-7f3a' };
const BOB = { user: 'bob', pass: 'bob-secret-91c2' };

let world: World;
let daemon: Daemon;
let ports: { auth: number; clients: number; commands: number; idle: number };
let usersFile: string;

/** `impulse hash-password USER` with `stdin` piped in, as an operator runs it. */
function hashPasswordCli(user: string, stdin: string): Promise<CliResult> {
  const proc = spawn(process.execPath, [CLI_PATH, 'hash-password', user], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  proc.stdin.end(stdin);
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function userLine(u: { user: string; pass: string }): Promise<string> {
  const r = await hashPasswordCli(u.user, `${u.pass}\n`);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

const plain = (u: { user: string; pass: string }) => Buffer.from(`\0${u.user}\0${u.pass}`).toString('base64');

before(async () => {
  world = await buildWorld({ zone: mxZone({ 'dest.test': '127.0.0.2' }), sinks: { mx: { host: '127.0.0.2' } } });
  ports = { auth: world.intakePort, clients: await freePort('127.0.0.1'), commands: await freePort('127.0.0.1'), idle: await freePort('127.0.0.1') };
  usersFile = join(world.dir, 'smtp-users');
  writeFileSync(usersFile, `# SMTP AUTH users\n${await userLine(ALICE)}`);
  const cert = makeCertificate('impulse.test');
  const relay_from = ['127.0.0.1/32'];
  daemon = await world.start({
    listen: [
      // users_file relative to the config file, which the world writes into its dir.
      { address: '127.0.0.1', port: ports.auth, relay_from, tls: { cert: cert.certPath, key: cert.keyPath },
        auth: { users_file: 'smtp-users', max_failures: 2 }, max_unauthenticated_commands: 4 },
      { address: '127.0.0.1', port: ports.clients, relay_from, max_clients: 3 },
      { address: '127.0.0.1', port: ports.commands, relay_from, max_command_length: 512 },
      { address: '127.0.0.1', port: ports.idle, relay_from, idle_timeout: '1s' },
    ],
  });
});

after(async () => {
  await world.close();
});

const outsider = (port = ports.auth) => RawSmtp.connect({ host: '127.0.0.1', port, localAddress: OUTSIDER });

test('impulse hash-password prints one user:hash line of the users-file format that verifies the password', async () => {
  const r = await hashPasswordCli('carol', 'pass word with spaces\r\nignored second line\n');
  assert.equal(r.code, 0, r.stderr);
  const m = /^carol:(\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+)\n$/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const hash = parseHash(m[1]!);
  assert.notEqual(typeof hash, 'string');
  assert.equal(await verifyPassword('pass word with spaces', hash as Exclude<typeof hash, string>), true);
  assert.equal(await verifyPassword('ignored second line', hash as Exclude<typeof hash, string>), false);

  const bad = await hashPasswordCli('no:colons', 'x\n');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid user name "no:colons"/);
  const empty = await hashPasswordCli('dave', '');
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /no password on stdin/);
});

test('before STARTTLS a client outside relay_from gets 530 5.7.0 for MAIL and 538 for AUTH', async () => {
  const c = await outsider();
  try {
    assert.match(c.greeting, /^220 /);
    assert.match(await c.command('EHLO outsider.test'), /STARTTLS/);
    assert.match(await c.command('MAIL FROM:<a@sender.test>'), /^530 5\.7\.0 Authentication required/);
    assert.match(await c.command(`AUTH PLAIN ${plain(ALICE)}`), /^538 .*STARTTLS/);
    assert.match(await c.command('MAIL FROM:<a@sender.test>'), /^530 5\.7\.0 /);
  } finally {
    c.close();
  }
});

test('a wrong password gets 535 5.7.8, is logged with client and user but not the password, and max_failures closes the session', async () => {
  const c = await outsider();
  try {
    await c.command('EHLO outsider.test');
    assert.match(await c.startTls(), /^220 /);
    assert.match(await c.command('EHLO outsider.test'), /AUTH PLAIN LOGIN/);
    assert.match(await c.command('MAIL FROM:<a@sender.test>'), /^530 5\.7\.0 /);
    assert.match(await c.command(`AUTH PLAIN ${plain({ user: 'alice', pass: 'guess-number-one' })}`), /^535 5\.7\.8 /);
    assert.match(await c.command(`AUTH PLAIN ${plain({ user: 'alice', pass: 'guess-number-two' })}`), /^421 4\.7\.0 Too many failed authentication attempts/);
    await c.waitClosed();
  } finally {
    c.close();
  }
  const [first] = await daemon.waitForLogs((r) => r.event === 'auth_failed', 2);
  assert.equal(first!.client, OUTSIDER);
  assert.equal(first!.user, 'alice');
  const all = JSON.stringify(daemon.logs);
  assert.ok(!all.includes('guess-number'), 'a password was logged');
});

test('after STARTTLS and AUTH an outside client injects, and the message is delivered marked ESMTPSA', async () => {
  const conn = new SMTPConnection({
    host: '127.0.0.1', port: ports.auth, localAddress: OUTSIDER, requireTLS: true, tls: { rejectUnauthorized: false },
  });
  const to = 'authed@dest.test';
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => conn.login(ALICE, (err) => (err ? reject(err) : resolve())));
    });
    const raw = makeMessage({ from: 'alice@sender.test', to: [to] });
    const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) =>
      conn.send({ from: 'alice@sender.test', to: [to] }, raw, (err, i) => (err ? reject(err) : resolve(i))));
    assert.match(info.response, /^250 2\.0\.0 Ok queued as /);
  } finally {
    conn.close();
  }
  const [msg] = await world.sinks.mx!.waitForRecipients([to]);
  assert.match(splitReceived(msg!.raw).received, /with ESMTPSA id /);
  const reception = await daemon.waitForLog((r) => r.event === 'reception' && r.recipients.includes(to));
  assert.equal(reception.user, 'alice');
  assert.equal(reception.client, OUTSIDER);
  assert.ok(daemon.logs.some((r) => r.event === 'auth' && r.user === 'alice' && r.client === OUTSIDER));
});

test('a client in relay_from injects on the auth listener without AUTH and is not offered it', async () => {
  const to = 'relayed@dest.test';
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: ports.auth });
  try {
    const ehlo = await c.command('EHLO upstream.test');
    assert.match(ehlo, /STARTTLS/);
    assert.doesNotMatch(ehlo, /AUTH/);
    assert.match(await c.command('MAIL FROM:<s@sender.test>'), /^250 /);
    assert.match(await c.command(`RCPT TO:<${to}>`), /^250 /);
    assert.match(await c.command('DATA'), /^354 /);
    c.write(`${makeMessage({ from: 's@sender.test', to: [to] })}.\r\n`);
    assert.match(await c.reply(), /^250 2\.0\.0 Ok queued as /);
    // Commands beyond max_unauthenticated_commands: a trusted client is never counted.
    for (let i = 0; i < 6; i++) assert.match(await c.command('NOOP'), /^250 /);
  } finally {
    c.close();
  }
  const [msg] = await world.sinks.mx!.waitForRecipients([to]);
  assert.match(splitReceived(msg!.raw).received, /with ESMTP id /);
});

test('a client that must authenticate gets 421 after max_unauthenticated_commands commands and is disconnected', async () => {
  const c = await outsider();
  try {
    assert.match(await c.command('EHLO outsider.test'), /^250/);
    for (let i = 0; i < 3; i++) assert.match(await c.command('NOOP'), /^250 /);
    assert.match(await c.command('NOOP'), /^421 /);
    await c.waitClosed();
  } finally {
    c.close();
  }
});

test('a reload rereads the users file; an invalid one is refused and the users read before stay', async () => {
  const auth = async (u: { user: string; pass: string }) => {
    const c = await outsider();
    try {
      await c.command('EHLO outsider.test');
      await c.startTls();
      await c.command('EHLO outsider.test');
      return await c.command(`AUTH PLAIN ${plain(u)}`);
    } finally {
      c.close();
    }
  };
  assert.match(await auth(BOB), /^535 /);
  appendFileSync(usersFile, await userLine(BOB));
  daemon.proc.kill('SIGHUP');
  const [reloaded] = await daemon.waitForLogs((r) => r.event === 'users_file_reloaded', 1);
  assert.equal(reloaded!.users, 2);
  assert.match(await auth(BOB), /^235 /);

  const good = readFileSync(usersFile, 'utf8');
  writeFileSync(usersFile, `${good}mallory has no hash\n`);
  daemon.proc.kill('SIGHUP');
  const invalid = await daemon.waitForLog((r) => r.event === 'users_file_invalid');
  assert.match(invalid.err, /line 4: expected user:hash/);
  assert.match(await auth(ALICE), /^235 /);
  assert.match(await auth(BOB), /^235 /);
  writeFileSync(usersFile, good);
});

test('max_clients: 3 sessions are served, the 4th gets 421 4.7.0 and is closed, and a closed session frees its place', async () => {
  const open: RawSmtp[] = [];
  try {
    for (let i = 0; i < 3; i++) open.push(await RawSmtp.connect({ host: '127.0.0.1', port: ports.clients }));
    for (const c of open) assert.match(c.greeting, /^220 /);
    const fourth = await RawSmtp.connect({ host: '127.0.0.1', port: ports.clients });
    assert.match(fourth.greeting, /^421 4\.7\.0 Too many connections/);
    await fourth.waitClosed();
    const refusal = await daemon.waitForLog((r) => r.event === 'too_many_clients');
    assert.equal(refusal.client, '127.0.0.1');

    assert.match(await open[0]!.command('QUIT'), /^221 /);
    await open[0]!.waitClosed();
    const next = await RawSmtp.connect({ host: '127.0.0.1', port: ports.clients });
    open.push(next);
    assert.match(next.greeting, /^220 /);
  } finally {
    for (const c of open) c.close();
  }
});

test('max_command_length: a line of the limit is served, one byte more gets 421 and the session is closed', async () => {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: ports.commands });
  try {
    assert.match(await c.command(`NOOP ${'x'.repeat(507)}`), /^250 /);
    assert.match(await c.command(`NOOP ${'x'.repeat(508)}`), /^421 .*too long/i);
    await c.waitClosed();
  } finally {
    c.close();
  }
});

test('idle_timeout: a silent session gets 421 and is closed', async () => {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: ports.idle });
  try {
    assert.match(await c.command('EHLO quiet.test'), /^250/);
    assert.match(await c.reply(10_000), /^421 .*[Tt]imeout/);
    await c.waitClosed();
  } finally {
    c.close();
  }
});

test('auth without tls is a configuration error naming the key', async () => {
  const path = join(world.dir, 'auth-without-tls.yaml');
  writeFileSync(path, 'listen:\n  - port: 2525\n    auth: { users_file: smtp-users }\n');
  const r = await runCli(['check-config', '-c', path]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /listen\[0\]\.auth: auth needs tls/);
});

test('a daemon whose users file is invalid does not start, and says which file and line', async () => {
  const cert = makeCertificate('impulse.test');
  const bad = join(world.dir, 'bad-users');
  writeFileSync(bad, '# users\nalice:$scrypt$ln=15$nope\n');
  // In a directory of its own: the world's holds the running daemon's config file.
  const d = await startDaemon({
    ...world.config,
    redis: { embedded: true, dir: join(world.dir, 'redis-bad') },
    listen: [{ address: '127.0.0.1', port: await freePort('127.0.0.1'), tls: { cert: cert.certPath, key: cert.keyPath }, auth: { users_file: bad } }],
  }, { waitReady: false });
  const { code } = await d.exited;
  assert.equal(code, 1);
  assert.match(JSON.stringify(d.logs) + d.stderr, /users_file [^ ]*bad-users: line 2 \(user \\?"alice\\?"\)/);
});

// DKIM signing end to end: the daemon signs at intake with RSA-2048 and Ed25519 keys, what arrives
// at the sink passes mailauth's verifier, a plugin chooses or vetoes keys per tenant, a reload
// rotates keys, and keys that cannot sign stop check-config, start and reload with their name.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { runCli, startDaemon } from '../helpers/daemon.js';
import { type TestDkimKey, makeDkimKey, verifyDkim } from '../helpers/dkim.js';
import { freePort } from '../helpers/ports.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld } from './world.js';

const TENANT_PLUGIN = fileURLToPath(new URL('../fixtures/dkim-tenant-plugin.js', import.meta.url));

let world: World;
let rsa: TestDkimKey;
let ed: TestDkimKey;
let news: TestDkimKey;
let tenant: TestDkimKey;
let all: TestDkimKey[];

const dkimConfig = (keys: TestDkimKey[]) => keys.map((k) => ({ domain: k.domain, selector: k.selector, key_file: k.file }));

before(async () => {
  world = await buildWorld({
    zone: { 'dest.test': { mx: [{ preference: 10, exchange: 'mx.dest.test' }] }, 'mx.dest.test': { a: ['127.0.0.140'] } },
    sinks: { dest: { host: '127.0.0.140' } },
  });
  rsa = makeDkimKey('example.com', 'r2026', 'rsa', 2048, world.dir);
  ed = makeDkimKey('example.com', 'e2026', 'ed25519', 0, world.dir);
  news = makeDkimKey('news.example.com', 'n2026', 'rsa', 2048, world.dir);
  tenant = makeDkimKey('tenant.test', 't1', 'ed25519', 0, world.dir);
  all = [rsa, ed, news, tenant];
});

after(async () => {
  await world.close();
});

const redisIn = (name: string) => ({ embedded: true, dir: join(world.dir, `redis-${name}`), appendfsync: 'everysec' });

async function send(from: string, to: string, raw: string | Buffer): Promise<string> {
  const res = await sendMail({ host: '127.0.0.1', port: world.intakePort, from, to: [to], raw, timeoutMs: 60_000 });
  return res.response;
}

async function arrived(to: string): Promise<Buffer> {
  const [m] = await world.sinks.dest!.waitForRecipients([to], 60_000);
  return m!.raw;
}

const verdicts = async (raw: Buffer) => (await verifyDkim(raw, all)).map((r) => `${r.domain}:${r.selector}:${r.algorithm}:${r.result}`);

test('mail is signed once at intake by its From: domain\'s keys and passes verification as it arrives: plain, 8-bit, dot lines, long lines, 10 MB', async () => {
  const statusPort = await freePort('127.0.0.1');
  const d = await world.start({ redis: redisIn('sign'), dkim: dkimConfig([rsa, ed, news, tenant]), metrics: { listen: `127.0.0.1:${statusPort}` } });
  try {
    const both = ['example.com:r2026:rsa-sha256:pass', 'example.com:e2026:ed25519-sha256:pass'];
    const cases: Array<[string, string, string, string[]]> = [
      ['plain', 'Ann <ann@example.com>', makeMessage({ from: 'Ann <ann@example.com>', to: ['plain@dest.test'] }), both],
      ['8bit', 'ann@example.com', makeMessage({ from: 'ann@example.com', to: ['8bit@dest.test'], subject: 'Grüße', body: 'Grüße aus Köln, ça va?\n' }), both],
      ['dots', 'ann@example.com', makeMessage({ from: 'ann@example.com', to: ['dots@dest.test'], body: '.\n..\n.starts with a dot\n' }), both],
      ['long', 'ann@example.com', makeMessage({ from: 'ann@example.com', to: ['long@dest.test'], body: `${'y'.repeat(5000)}\n` }), both],
      ['big', 'ann@example.com', makeMessage({ from: 'ann@example.com', to: ['big@dest.test'], size: 10 * 1024 * 1024 }), both],
      ['sub', 'Newsletter <n@mail.news.example.com>', makeMessage({ from: 'Newsletter <n@mail.news.example.com>', to: ['sub@dest.test'] }), ['news.example.com:n2026:rsa-sha256:pass']],
      ['none', 'x@other.test', makeMessage({ from: 'x@other.test', to: ['none@dest.test'] }), []],
    ];
    for (const [local, from, raw] of cases) await send('bounces@example.com', `${local}@dest.test`, raw.replace(/^From: .*$/m, `From: ${from}`));
    for (const [local, , , want] of cases) {
      const raw = await arrived(`${local}@dest.test`);
      assert.deepEqual(await verdicts(raw), want, local);
      // One set of signatures, on top, above nothing but Impulse's own Received: the message was signed once.
      const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1');
      assert.equal(head.match(/^DKIM-Signature:/gim)?.length ?? 0, want.length, local);
      if (want.length > 0) assert.match(head, /^Received: [^]*?\r\nDKIM-Signature: /);
    }
    const received = Object.fromEntries(d.logs.filter((r) => r.event === 'reception').map((r) => [r.recipients[0], r.dkim]));
    assert.deepEqual(received['plain@dest.test'], ['example.com:r2026', 'example.com:e2026']);
    assert.deepEqual(received['sub@dest.test'], ['news.example.com:n2026']);
    assert.equal(received['none@dest.test'], undefined);

    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    const count = (labels: string) => Number(new RegExp(`^impulse_dkim_signatures_total\\{${labels}\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    assert.equal(count('signing_domain="example.com",selector="r2026",algorithm="rsa-sha256",result="signed"'), 5);
    assert.equal(count('signing_domain="example.com",selector="e2026",algorithm="ed25519-sha256",result="signed"'), 5);
    assert.equal(count('signing_domain="news.example.com",selector="n2026",algorithm="rsa-sha256",result="signed"'), 1);
  } finally {
    await d.stop();
  }
});

test('a dkim_sign plugin picks a tenant\'s key, vetoes signing, or names a key that is not configured and the message is refused with 451', async () => {
  const d = await world.start({
    redis: redisIn('hook'), dkim: dkimConfig([rsa, ed, tenant]),
    plugins: [{ path: TENANT_PLUGIN, options: { tenants: { acme: [{ domain: 'tenant.test', selector: 't1' }], quiet: false, broken: [{ domain: 'tenant.test', selector: 'gone' }] } } }],
  });
  try {
    const msg = (to: string, tenantName: string) => makeMessage({ from: 'ann@example.com', to: [to], headers: { 'X-Tenant': tenantName } });
    await send('s@example.com', 'acme@dest.test', msg('acme@dest.test', 'acme'));
    await send('s@example.com', 'quiet@dest.test', msg('quiet@dest.test', 'quiet'));
    await send('s@example.com', 'other@dest.test', msg('other@dest.test', 'someone'));
    await assert.rejects(send('s@example.com', 'broken@dest.test', msg('broken@dest.test', 'broken')),
      (err: Error & { response?: string }) => err.response === '451 4.3.0 DKIM key tenant.test:gone is not configured, try again later');
    assert.deepEqual(await verdicts(await arrived('acme@dest.test')), ['tenant.test:t1:ed25519-sha256:pass']);
    assert.deepEqual(await verdicts(await arrived('quiet@dest.test')), []);
    assert.deepEqual(await verdicts(await arrived('other@dest.test')), ['example.com:r2026:rsa-sha256:pass', 'example.com:e2026:ed25519-sha256:pass']);
    const refused = await d.waitForLog((r) => r.event === 'dkim_unknown_key');
    assert.deepEqual(refused.keys, ['tenant.test:gone']);
    assert.equal(world.sinks.dest!.messages.filter((m) => m.rcptTo.includes('broken@dest.test')).length, 0);
  } finally {
    await d.stop();
  }
});

test('a reload rotates keys for the next message; a reload naming a missing key is refused and the running keys sign on', async () => {
  const d = await world.start({ redis: redisIn('rotate'), dkim: dkimConfig([rsa]) });
  const rewrite = (keys: unknown) => {
    const doc = parse(readFileSync(d.configPath, 'utf8')) as Record<string, unknown>;
    doc.dkim = keys;
    writeFileSync(d.configPath, stringify(doc));
  };
  try {
    await send('s@example.com', 'before@dest.test', makeMessage({ from: 'a@example.com', to: ['before@dest.test'] }));
    assert.deepEqual(await verdicts(await arrived('before@dest.test')), ['example.com:r2026:rsa-sha256:pass']);

    rewrite(dkimConfig([ed]));
    const ok = await runCli(['reload', '-c', d.configPath]);
    assert.equal(ok.code, 0, ok.stderr);
    await send('s@example.com', 'after@dest.test', makeMessage({ from: 'a@example.com', to: ['after@dest.test'] }));
    assert.deepEqual(await verdicts(await arrived('after@dest.test')), ['example.com:e2026:ed25519-sha256:pass']);

    rewrite([...dkimConfig([rsa]), { domain: 'example.com', selector: 'lost', key_file: join(world.dir, 'lost.pem') }]);
    d.proc.kill('SIGHUP');
    const refused = await d.waitForLog((r) => r.event === 'reload_refused');
    assert.deepEqual(refused.errors, [`dkim[1] (example.com, selector lost): key_file ${join(world.dir, 'lost.pem')}: no such file`]);
    await send('s@example.com', 'kept@dest.test', makeMessage({ from: 'a@example.com', to: ['kept@dest.test'] }));
    assert.deepEqual(await verdicts(await arrived('kept@dest.test')), ['example.com:e2026:ed25519-sha256:pass']);
  } finally {
    await d.stop();
  }
});

test('check-config and start refuse a key that cannot sign, naming it; a 1024-bit key is a warning', async () => {
  const weak = makeDkimKey('weak.test', 'w', 'rsa', 1024, world.dir);
  const config = join(world.dir, 'check.yaml');
  const missing = join(world.dir, 'nowhere.pem');
  writeFileSync(config, stringify({ ...world.config, dkim: [...dkimConfig([weak]), { domain: 'example.com', selector: 'x', key_file: missing }] }));
  const bad = await runCli(['check-config', '-c', config]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /impulse: warning: dkim\[0\] \(weak\.test, selector w\): .*an RSA key of 1024 bits; receivers expect 2048, replace it/);
  assert.match(bad.stderr, new RegExp(`invalid configuration .*check\\.yaml:\\n  dkim\\[1\\] \\(example\\.com, selector x\\): key_file ${missing}: no such file`));

  writeFileSync(config, stringify({ ...world.config, dkim: dkimConfig([weak]) }));
  const warned = await runCli(['check-config', '-c', config]);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(warned.stderr, /1024 bits/);

  const d = await startDaemon({ ...world.config, admin: { socket: join(world.dir, 'bad.sock') }, redis: redisIn('bad'), dkim: [{ domain: 'example.com', selector: 'x', key_file: missing }] },
    { dir: world.dir, waitReady: false });
  const exit = await d.exited;
  assert.equal(exit.code, 1);
  assert.match(d.stderr, /DKIM keys cannot be used: dkim\[0\] \(example\.com, selector x\): key_file .*nowhere\.pem: no such file/);
  rmSync(config);
});

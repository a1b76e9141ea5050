// MX ordering and the DNS outcomes that end delivery, driven by an in-memory resolver so every
// case is exact; the same paths run against a real DNS server in the end-to-end tests.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressSet } from '../../src/core/cidr.js';
import { ImpulseError } from '../../src/core/error.js';
import type { DnsResolver, MxRecord } from '../../src/dns/resolver.js';
import { resolveTargets } from '../../src/delivery/route.js';

function dnsError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

function resolver(mx: Record<string, MxRecord[] | string>, a: Record<string, string[] | string>): DnsResolver {
  const answer = <T>(v: T | string | undefined): Promise<T> =>
    v === undefined ? Promise.reject(dnsError('ENOTFOUND')) : typeof v === 'string' ? Promise.reject(dnsError(v)) : Promise.resolve(v);
  return {
    resolveMx: (n) => answer(mx[n] ?? (a[n] ? 'ENODATA' : undefined)),
    resolve4: (n) => answer(a[n] ?? (mx[n] ? 'ENODATA' : undefined)),
    resolve6: () => Promise.reject(dnsError('ENODATA')),
  };
}

const open = { routes: {}, port: 25, prohibited: new AddressSet([]) };

async function failure(p: Promise<unknown>): Promise<ImpulseError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ImpulseError, `expected ImpulseError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the lookup to fail');
}

test('MX hosts are tried in preference order; equal preferences are shuffled', async () => {
  const r = resolver(
    { 'd.test': [{ exchange: 'c.mx', priority: 20 }, { exchange: 'a.mx', priority: 10 }, { exchange: 'b.mx', priority: 10 }] },
    { 'a.mx': ['192.0.2.1'], 'b.mx': ['192.0.2.2'], 'c.mx': ['192.0.2.3'] },
  );
  const first = await resolveTargets('d.test', r, { ...open, random: (() => { let i = 0; return () => [0.9, 0.5, 0.1][i++ % 3]!; })() });
  assert.deepEqual(first.map((t) => t.host), ['b.mx', 'a.mx', 'c.mx']);
  const second = await resolveTargets('d.test', r, { ...open, random: () => 0.5 });
  assert.deepEqual(second.map((t) => [t.host, t.address, t.port]), [['a.mx', '192.0.2.1', 25], ['b.mx', '192.0.2.2', 25], ['c.mx', '192.0.2.3', 25]]);
});

test('without MX records the domain itself is the implicit MX', async () => {
  const t = await resolveTargets('d.test', resolver({}, { 'd.test': ['192.0.2.9'] }), open);
  assert.deepEqual(t.map((x) => [x.host, x.address]), [['d.test', '192.0.2.9']]);
});

test('a static route skips the MX lookup', async () => {
  const t = await resolveTargets('d.test', resolver({}, {}), { ...open, routes: { 'd.test': '192.0.2.7:2525' } });
  assert.deepEqual(t.map((x) => [x.host, x.address, x.port]), [['192.0.2.7', '192.0.2.7', 2525]]);
});

test('DNS outcomes: null MX 556 5.1.10, NXDOMAIN 550 5.1.2, SERVFAIL 451 4.4.3, all prohibited 551 5.4.6', async () => {
  const nullMx = await failure(resolveTargets('n.test', resolver({ 'n.test': [{ exchange: '', priority: 0 }] }, {}), open));
  assert.deepEqual([nullMx.code, nullMx.reply.code, nullMx.reply.enhanced], ['SMTP_NULL_MX', 556, '5.1.10']);
  const nx = await failure(resolveTargets('x.test', resolver({}, {}), open));
  assert.deepEqual([nx.code, nx.reply.code, nx.reply.enhanced, nx.temporary], ['NXDOMAIN', 550, '5.1.2', false]);
  const sf = await failure(resolveTargets('s.test', resolver({ 's.test': 'ESERVFAIL' }, {}), open));
  assert.deepEqual([sf.code, sf.reply.code, sf.temporary], ['MX_LOOKUP_FAILED', 451, true]);
  const to = await failure(resolveTargets('t.test', resolver({ 't.test': 'ETIMEOUT' }, {}), open));
  assert.equal(to.temporary, true);
  const pr = await failure(resolveTargets('p.test', resolver({ 'p.test': [{ exchange: 'mx.p.test', priority: 0 }] }, { 'mx.p.test': ['10.1.2.3'] }),
    { ...open, prohibited: new AddressSet(['10.0.0.0/8']) }));
  assert.deepEqual([pr.code, pr.reply.code, pr.reply.enhanced], ['PROHIBITED_IP', 551, '5.4.6']);
});

test('a null MX beside real MX records is ignored (RFC 7505 §3)', async () => {
  const r = resolver({ 'd.test': [{ exchange: '', priority: 0 }, { exchange: 'mx.d.test', priority: 10 }] }, { 'mx.d.test': ['192.0.2.4'] });
  assert.deepEqual((await resolveTargets('d.test', r, open)).map((t) => t.host), ['mx.d.test']);
});

test('prohibited addresses are skipped while others remain', async () => {
  const r = resolver({ 'd.test': [{ exchange: 'a.mx', priority: 0 }] }, { 'a.mx': ['127.0.0.1', '192.0.2.5'] });
  const t = await resolveTargets('d.test', r, { ...open, prohibited: new AddressSet(['127.0.0.0/8']) });
  assert.deepEqual(t.map((x) => x.address), ['192.0.2.5']);
});

// What a destination's MTA-STS policy asks of each MX host, and how a policy file is read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DaneState, type DestinationTls, type TlsRequirement, certificateResult, requirementFor } from '../../src/delivery/tls-requirement.js';
import { StsError, mxAllowed, readPolicy } from '../../src/mta-sts/policy.js';

const policy = (mode: 'enforce' | 'testing' | 'none', mx: string[]): DestinationTls =>
  ({ sts: { kind: 'policy', policy: { id: 'p1', mode, mx, maxAge: 86400, fetchedAt: 0, expiresAt: 86_400_000 } } });

test('MX patterns: a name equal to one, or one label before a *. pattern\'s suffix (RFC 8461 §4.1)', () => {
  const table: Array<[string, string[], boolean]> = [
    ['mx1.example.com', ['mx1.example.com'], true],
    ['MX1.Example.COM.', ['mx1.example.com'], true],
    ['mx2.example.com', ['mx1.example.com'], false],
    ['mx1.example.com', ['*.example.com'], true],
    ['a.mx1.example.com', ['*.example.com'], false],
    ['example.com', ['*.example.com'], false],
    ['mx1.example.com.evil.test', ['*.example.com'], false],
    ['mx1.other.test', ['mx1.example.com', '*.other.test'], true],
  ];
  for (const [host, patterns, expected] of table) assert.equal(mxAllowed(host, patterns), expected, `${host} vs ${patterns.join(',')}`);
});

test('each MX host gets what the policy and the mta_sts switch ask of it', () => {
  const on = { mta_sts: true, dane: false };
  const kinds = (tls: DestinationTls, host: string, o = on): TlsRequirement['kind'] => requirementFor('example.com', host, 25, tls, o).kind;
  const table: Array<[string, DestinationTls, string, { mta_sts: boolean; dane: boolean }, TlsRequirement['kind']]> = [
    ['no lookup made', {}, 'mx.example.com', on, 'options'],
    ['no policy published', { sts: { kind: 'none' } }, 'mx.example.com', on, 'options'],
    ['a policy that could not be fetched', { sts: { kind: 'unavailable', id: 'x', error: new StsError('sts-policy-fetch-error', 'x') } }, 'mx.example.com', on, 'options'],
    ['mode none', policy('none', ['*.example.com']), 'mx.example.com', on, 'options'],
    ['enforce, MX allowed', policy('enforce', ['*.example.com']), 'mx.example.com', on, 'sts-enforce'],
    ['enforce, MX not allowed', policy('enforce', ['*.example.com']), 'mx.elsewhere.test', on, 'refused'],
    ['testing, MX not allowed', policy('testing', ['*.example.com']), 'mx.elsewhere.test', on, 'sts-testing'],
    ['enforce, but mta_sts: false', policy('enforce', ['*.example.com']), 'mx.elsewhere.test', { mta_sts: false, dane: false }, 'options'],
  ];
  for (const [what, tls, host, o, expected] of table) assert.equal(kinds(tls, host, o), expected, what);
});

test('a host ruled out by an enforced policy is deferred with 4.7.5, naming the host and the patterns', () => {
  const r = requirementFor('example.com', 'mx.elsewhere.test', 25, policy('enforce', ['*.example.com', 'mx.example.net']), { mta_sts: true, dane: false });
  assert.equal(r.kind, 'refused');
  assert.ok(r.kind === 'refused');
  assert.deepEqual([r.reply.code, r.reply.enhanced, r.resultType], [451, '4.7.5', 'validation-failure']);
  assert.match(r.reply.text, /MX host mx\.elsewhere\.test is not allowed by the MTA-STS policy of example\.com \(mx: \*\.example\.com, mx\.example\.net\)/);
});

test('DANE applies to hosts of a signed MX RRset with usable TLSA records, before MTA-STS; a failed TLSA lookup in a signed zone refuses the host', () => {
  const secure = { kind: 'secure' as const };
  const insecure = { kind: 'insecure' as const };
  const record = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32) };
  const dane = (mx: DaneState['mx'], tlsa: DaneState['hosts'][string]['tlsa'], address: DaneState['hosts'][string]['address'] = secure): DaneState =>
    ({ mx, hosts: { 'mx.example.com': { tlsa, address } } });
  const both = { mta_sts: true, dane: true };
  const enforceElsewhere = policy('enforce', ['*.elsewhere.test']);
  const table: Array<[string, DestinationTls, { mta_sts: boolean; dane: boolean }, TlsRequirement['kind']]> = [
    ['usable records', { dane: dane(secure, { kind: 'secure', records: [record] }) }, both, 'dane'],
    ['usable records outrank an MTA-STS policy that rules the host out', { ...enforceElsewhere, dane: dane(secure, { kind: 'secure', records: [record] }) }, both, 'dane'],
    ['dane: false ignores them', { ...enforceElsewhere, dane: dane(secure, { kind: 'secure', records: [record] }) }, { mta_sts: true, dane: false }, 'refused'],
    ['an unsigned MX RRset: no DANE', { dane: dane(insecure, { kind: 'secure', records: [record] }) }, both, 'options'],
    ['records, none usable: TLS mandatory, unauthenticated', { dane: dane(secure, { kind: 'secure-unusable' }) }, both, 'dane-encrypt'],
    ['a secure denial: no DANE, MTA-STS decides', { ...enforceElsewhere, dane: dane(secure, { kind: 'none' }) }, both, 'refused'],
    ['records without AD: no DANE', { dane: dane(secure, { kind: 'insecure' }) }, both, 'options'],
    ['a failed lookup, host in a signed zone', { dane: dane(secure, { kind: 'failed', reason: 'TLSA lookup of _25._tcp.mx.example.com failed: ESERVFAIL' }) }, both, 'refused'],
    ['a failed lookup, host in an unsigned zone', { dane: dane(secure, { kind: 'failed', reason: 'x' }, insecure) }, both, 'options'],
    ['the MX RRset\'s DNSSEC status unknown (bogus data)', { dane: { mx: { kind: 'failed', reason: 'MX lookup of example.com failed: ESERVFAIL' }, hosts: {} } }, both, 'refused'],
  ];
  for (const [what, tls, o, expected] of table) assert.equal(requirementFor('example.com', 'mx.example.com', 25, tls, o).kind, expected, what);
  const r = requirementFor('example.com', 'mx.example.com', 25, { dane: dane(secure, { kind: 'failed', reason: 'TLSA lookup of _25._tcp.mx.example.com failed: ESERVFAIL' }) }, both);
  assert.ok(r.kind === 'refused');
  assert.deepEqual([r.reply.code, r.reply.enhanced, r.resultType, r.policy.id], [451, '4.7.5', 'dnssec-invalid', '_25._tcp.mx.example.com']);
  assert.match(r.reply.text, /DANE: TLSA lookup of _25\._tcp\.mx\.example\.com failed: ESERVFAIL, and mx\.example\.com is in a signed zone/);
});

test('certificate failures get RFC 8460 result types', () => {
  const table: Array<[string | undefined, string]> = [
    ['CERT_HAS_EXPIRED', 'certificate-expired'],
    ['CERT_NOT_YET_VALID', 'certificate-expired'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'certificate-host-mismatch'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'certificate-not-trusted'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'certificate-not-trusted'],
    [undefined, 'certificate-not-trusted'],
  ];
  for (const [code, expected] of table) assert.equal(certificateResult(code), expected, String(code));
});

test('a policy file is read with its id and expiry; a broken one is sts-policy-invalid', () => {
  const p = readPolicy('version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n', 'id1', 1000);
  assert.deepEqual(p, { id: 'id1', mode: 'enforce', mx: ['mx1.example.com', '*.example.net'], maxAge: 604800, fetchedAt: 1000, expiresAt: 1000 + 604800_000 });
  const broken: Array<[string, RegExp]> = [
    ['mode: enforce\nmx: a.test\nmax_age: 1\n', /version/i],
    ['version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n', /mode/i],
    ['version: STSv1\nmode: enforce\nmax_age: 1\n', /mx/i],
    ['version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999\n', /max_age/i],
  ];
  for (const [text, reason] of broken) {
    assert.throws(() => readPolicy(text, 'id', 0), (err: unknown) => err instanceof StsError && err.resultType === 'sts-policy-invalid' && reason.test(err.message), text);
  }
});

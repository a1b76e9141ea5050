// The DNS side of DANE (RFC 7672 §2.2) through the DNS client and the loopback DNS server: the TLSA
// lookup's outcomes, and whether an MX RRset or a host's address records are DNSSEC-secure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDnsClient } from '../../src/dns/client.js';
import { type DnssecStatus, addressSecurity, mxSecurity } from '../../src/dane/dnssec.js';
import { type TlsaLookup, lookupTlsa } from '../../src/dane/lookup.js';
import { startDns } from '../helpers/dns.js';

const ee = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 1) };
const ta = { usage: 2, selector: 0, matchingType: 2, data: Buffer.alloc(64, 2) };
const pkix = { usage: 1, selector: 1, matchingType: 1, data: Buffer.alloc(32, 3) };
const shortDigest = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(20, 4) };

test('TLSA lookup: secure with the usable records, secure but unusable, none, insecure, failed', async () => {
  const server = await startDns({
    '_25._tcp.mx.signed.test': { tlsa: [pkix, ee, shortDigest, ta], secure: true },
    '_2525._tcp.mx.signed.test': { tlsa: [ee], secure: true },
    '_25._tcp.unusable.signed.test': { tlsa: [pkix, shortDigest], secure: true },
    '_25._tcp.nx.signed.test': { rcode: 'NXDOMAIN', secure: true },
    '_25._tcp.empty.signed.test': { secure: true },
    '_25._tcp.mx.plain.test': { tlsa: [ee] },
    '_25._tcp.broken.signed.test': { rcode: 'SERVFAIL', secure: true },
  });
  try {
    const client = createDnsClient({ servers: [server.server], timeout: 1000, tries: 1 });
    const table: Array<[string, number, TlsaLookup]> = [
      ['mx.signed.test', 25, { kind: 'secure', records: [ee, ta] }],
      ['MX.Signed.Test.', 2525, { kind: 'secure', records: [ee] }],
      ['unusable.signed.test', 25, { kind: 'secure-unusable' }],
      ['nx.signed.test', 25, { kind: 'none' }],
      ['empty.signed.test', 25, { kind: 'none' }],
      ['mx.plain.test', 25, { kind: 'insecure' }],
      ['absent.test', 25, { kind: 'insecure' }],
      ['broken.signed.test', 25, { kind: 'failed', reason: `TLSA lookup of _25._tcp.broken.signed.test failed: ESERVFAIL from ${server.server}` }],
    ];
    for (const [host, port, expected] of table) assert.deepEqual(await lookupTlsa(client, host, port), expected, `${host}:${port}`);
    assert.deepEqual(server.queries.slice(0, 2).map((q) => `${q.name} ${q.type}`), ['_25._tcp.mx.signed.test TLSA', '_2525._tcp.mx.signed.test TLSA']);
  } finally {
    await server.close();
  }
});

test('MX RRset and address records: secure (denials included), insecure, failed', async () => {
  const server = await startDns({
    'signed.test': { mx: [{ preference: 10, exchange: 'mx.signed.test' }], secure: true },
    'mx.signed.test': { a: ['192.0.2.1'], secure: true },
    'v6.signed.test': { aaaa: ['2001:db8::1'], secure: true },
    'nomx.signed.test': { a: ['192.0.2.2'], secure: true },
    'plain.test': { mx: [{ preference: 10, exchange: 'mx.plain.test' }] },
    'mx.plain.test': { a: ['192.0.2.3'] },
    'slow.test': { drop: true },
  });
  try {
    const client = createDnsClient({ servers: [server.server], timeout: 200, tries: 1 });
    const table: Array<[typeof mxSecurity, string, DnssecStatus]> = [
      [mxSecurity, 'signed.test', { kind: 'secure' }],
      [mxSecurity, 'nomx.signed.test', { kind: 'secure' }],
      [mxSecurity, 'plain.test', { kind: 'insecure' }],
      [addressSecurity, 'mx.signed.test', { kind: 'secure' }],
      [addressSecurity, 'v6.signed.test', { kind: 'secure' }],
      [addressSecurity, 'mx.plain.test', { kind: 'insecure' }],
      [addressSecurity, 'slow.test', { kind: 'failed', reason: `A lookup of slow.test failed: ETIMEOUT from ${server.server}` }],
    ];
    for (const [lookup, name, expected] of table) assert.deepEqual(await lookup(client, name), expected, `${lookup.name} ${name}`);
    assert.deepEqual(server.queries.map((q) => q.type), ['MX', 'MX', 'MX', 'A', 'A', 'A', 'A']);
  } finally {
    await server.close();
  }
});

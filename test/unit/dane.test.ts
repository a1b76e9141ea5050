// DANE verification (RFC 7672 §3.1) against certificates openssl makes for the run, with TLSA data
// openssl computes, so neither side of a match comes from the code under test; and the chain as a
// real TLS handshake on loopback delivers it.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { type TLSSocket, connect, createServer } from 'node:tls';
import type { TlsaRecord } from '../../src/dns/client.js';
import { peerChain } from '../../src/dane/chain.js';
import { subjectPublicKeyInfo } from '../../src/dane/spki.js';
import { daneVerify } from '../../src/dane/verify.js';
import { type TestCertificate, makeCa, makeCertificate, signedBy, tlsaAssociation } from '../helpers/tls.js';

const MX = 'mx.example.net';
const root = makeCa('DANE Test Root');
const inter = root.intermediate('DANE Test Intermediate');
const leaf = inter.sign(MX);
const selfSigned = makeCertificate(MX);
const x509 = (pem: Buffer): X509Certificate => new X509Certificate(pem);
const chain = [x509(leaf.cert), x509(inter.cert), x509(root.cert)];

function tlsa(usage: number, selector: number, matchingType: number, pem: Buffer): TlsaRecord {
  return { usage, selector, matchingType, data: tlsaAssociation(pem, selector, matchingType) };
}

/** The certificate with the last byte of its signature changed: parses as before, verifies no more. */
function tampered(pem: Buffer): X509Certificate {
  const der = Buffer.from(x509(pem).raw);
  der[der.length - 1] ^= 0x01;
  return new X509Certificate(der);
}

function leafOf(cert: TestCertificate, ...issuers: Buffer[]): X509Certificate[] {
  return [cert.cert, ...issuers].map(x509);
}

/** The verdict as one comparable line: which of `records` matched at what depth, or the reason. */
function verify(records: TlsaRecord[], certs: X509Certificate[], names = [MX], now?: number): string {
  const v = daneVerify(records, certs, names, now);
  return v.ok ? `ok record ${records.indexOf(v.record)} depth ${v.depth}` : v.reason;
}

test('the SubjectPublicKeyInfo is the one openssl reads from the certificate', () => {
  for (const pem of [leaf.cert, inter.cert, selfSigned.cert]) {
    assert.deepEqual(subjectPublicKeyInfo(x509(pem).raw), tlsaAssociation(pem, 1, 0));
  }
});

test('DANE-EE matches the server certificate or its key, whatever its names and dates', () => {
  const expired = inter.sign('other.example', { expired: true });
  const other = makeCertificate(MX);
  const table: Array<[string, TlsaRecord[], X509Certificate[], string]> = [
    ['cert SHA-256', [tlsa(3, 0, 1, selfSigned.cert)], leafOf(selfSigned), 'ok record 0 depth 0'],
    ['SPKI SHA-256', [tlsa(3, 1, 1, selfSigned.cert)], leafOf(selfSigned), 'ok record 0 depth 0'],
    ['SPKI SHA-512', [tlsa(3, 1, 2, selfSigned.cert)], leafOf(selfSigned), 'ok record 0 depth 0'],
    ['full cert (matching 0)', [tlsa(3, 0, 0, selfSigned.cert)], leafOf(selfSigned), 'ok record 0 depth 0'],
    ['full SPKI (matching 0)', [tlsa(3, 1, 0, selfSigned.cert)], leafOf(selfSigned), 'ok record 0 depth 0'],
    ['second record matches', [tlsa(3, 1, 1, other.cert), tlsa(3, 1, 1, leaf.cert)], chain, 'ok record 1 depth 0'],
    ['expired leaf of another name', [tlsa(3, 1, 1, expired.cert)], leafOf(expired), 'ok record 0 depth 0'],
    ['wrong digest', [tlsa(3, 1, 1, other.cert), tlsa(3, 0, 2, other.cert)], leafOf(selfSigned), `no TLSA record matches the certificate of ${MX}`],
    ['EE of the issuer', [tlsa(3, 1, 1, inter.cert)], chain, `no TLSA record matches the certificate of ${MX}`],
    ['no certificate', [tlsa(3, 1, 1, leaf.cert)], [], `${MX} presented no certificate`],
  ];
  for (const [name, records, certs, expected] of table) assert.equal(verify(records, certs), expected, name);
});

test('DANE-TA matches a certificate the server certificate chains up to, whose names and dates then count', () => {
  const other = inter.sign('other.example');
  const wildcard = inter.sign('*.example.net');
  const expired = inter.sign(MX, { expired: true });
  const stranger = makeCa('Unrelated CA').sign(MX);
  const byLeaf = signedBy(leaf, MX);
  // Same issuer name as the real intermediate, another key.
  const impostor = makeCa('DANE Test Intermediate').sign(MX);
  const unfit = inter.intermediate('Signs No Certificates', { keyUsage: 'digitalSignature' });
  const table: Array<[string, TlsaRecord[], X509Certificate[], string[], string]> = [
    ['root, cert SHA-256', [tlsa(2, 0, 1, root.cert)], chain, [MX], 'ok record 0 depth 2'],
    ['root, SPKI SHA-512', [tlsa(2, 1, 2, root.cert)], chain, [MX], 'ok record 0 depth 2'],
    ['intermediate, SPKI SHA-256', [tlsa(2, 1, 1, inter.cert)], chain, [MX], 'ok record 0 depth 1'],
    ['intermediate, full cert', [tlsa(2, 0, 0, inter.cert)], leafOf(leaf, inter.cert), [MX], 'ok record 0 depth 1'],
    ['chain out of order', [tlsa(2, 1, 1, root.cert)], leafOf(leaf, root.cert, inter.cert), [MX], 'ok record 0 depth 1'],
    ['second reference name', [tlsa(2, 1, 1, root.cert)], leafOf(other, inter.cert, root.cert), [MX, 'other.example'], 'ok record 0 depth 2'],
    ['wildcard in the leftmost label', [tlsa(2, 1, 1, inter.cert)], leafOf(wildcard, inter.cert), [MX], 'ok record 0 depth 1'],
    ['name mismatch', [tlsa(2, 1, 1, root.cert)], leafOf(other, inter.cert, root.cert), [MX],
      `the certificate of ${MX} names DNS:other.example, not ${MX}`],
    ['wildcard over two labels', [tlsa(2, 1, 1, inter.cert)], leafOf(wildcard, inter.cert), ['a.mx.example.net'],
      'the certificate of a.mx.example.net names DNS:*.example.net, not a.mx.example.net'],
    ['expired leaf', [tlsa(2, 1, 1, root.cert)], leafOf(expired, inter.cert, root.cert), [MX],
      `the certificate of ${MX} expired on ${x509(expired.cert).validTo}`],
    ['anchor the leaf does not chain to', [tlsa(2, 1, 1, inter.cert)], leafOf(stranger, inter.cert), [MX],
      `the certificate of ${MX} does not chain up to its TLSA trust anchor`],
    ['issuer of the same name, another key', [tlsa(2, 1, 1, inter.cert)], leafOf(impostor, inter.cert), [MX],
      `the certificate of ${MX} does not chain up to its TLSA trust anchor`],
    ['signature tampered with', [tlsa(2, 1, 1, inter.cert)], [tampered(leaf.cert), x509(inter.cert)], [MX],
      `the certificate of ${MX} does not chain up to its TLSA trust anchor`],
    ['issuer whose key usage excludes signing certificates', [tlsa(2, 1, 1, root.cert)], leafOf(unfit.sign(MX), unfit.cert, inter.cert, root.cert), [MX],
      `the certificate of ${MX} does not chain up to its TLSA trust anchor`],
    ['anchor not presented', [tlsa(2, 1, 1, root.cert)], leafOf(leaf, inter.cert), [MX], `no TLSA record matches the certificate of ${MX}`],
    ['TA record of the leaf itself', [tlsa(2, 1, 1, leaf.cert)], chain, [MX], `no TLSA record matches the certificate of ${MX}`],
    ['issuer that is no CA', [tlsa(2, 1, 1, leaf.cert)], leafOf(byLeaf, leaf.cert), [MX],
      `CN=${MX} in the chain of ${MX} is not a CA certificate`],
    ['a failed anchor, then one that holds', [tlsa(2, 1, 1, inter.cert), tlsa(2, 1, 1, root.cert)], leafOf(leaf, inter.cert, root.cert), [MX],
      'ok record 0 depth 1'],
  ];
  for (const [name, records, certs, names, expected] of table) assert.equal(verify(records, certs, names), expected, name);

  // Dates are taken at the time given: in three days the two-day leaf has expired.
  const later = Date.now() + 3 * 86_400_000;
  assert.equal(verify([tlsa(2, 1, 1, root.cert)], chain, [MX], later), `the certificate of ${MX} expired on ${chain[0]!.validTo}`);
  assert.equal(verify([tlsa(3, 1, 1, leaf.cert)], chain, [MX], later), 'ok record 0 depth 0');
});

test('unusable records are ignored: PKIX usages, unknown selectors and matching types, digests of the wrong length', () => {
  const unusable = [
    tlsa(0, 0, 1, root.cert), // PKIX-TA
    tlsa(1, 1, 1, leaf.cert), // PKIX-EE
    { usage: 3, selector: 2, matchingType: 1, data: tlsaAssociation(leaf.cert, 1, 1) },
    { usage: 3, selector: 1, matchingType: 3, data: tlsaAssociation(leaf.cert, 1, 1) },
    { usage: 3, selector: 1, matchingType: 1, data: tlsaAssociation(leaf.cert, 1, 2) },
    { usage: 3, selector: 1, matchingType: 2, data: tlsaAssociation(leaf.cert, 1, 1) },
    { usage: 3, selector: 1, matchingType: 0, data: Buffer.alloc(0) },
  ];
  assert.equal(verify(unusable, chain), `no usable TLSA record for ${MX}`);
  assert.equal(verify([...unusable, tlsa(3, 1, 1, leaf.cert)], chain), `ok record ${unusable.length} depth 0`);
});

async function handshakeChain(presented: Buffer[], key: Buffer): Promise<X509Certificate[]> {
  const server = createServer({ cert: Buffer.concat(presented), key }, (socket) => socket.end());
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: MX, rejectUnauthorized: false });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return peerChain(socket);
  } finally {
    socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

test('the chain of a real TLS handshake: the server certificate first, then what it sent, a self-signed one alone', async () => {
  const subjects = (certs: X509Certificate[]): string[] => certs.map((c) => c.subject);
  const sent = await handshakeChain([leaf.cert, inter.cert], leaf.key);
  assert.deepEqual(subjects(sent), [`CN=${MX}`, 'CN=DANE Test Intermediate']);
  assert.deepEqual(sent.map((c) => c.raw), [x509(leaf.cert).raw, x509(inter.cert).raw]);
  assert.equal(verify([tlsa(2, 1, 1, inter.cert)], sent), 'ok record 0 depth 1');
  assert.equal(verify([tlsa(3, 0, 1, leaf.cert)], sent), 'ok record 0 depth 0');
  assert.equal(verify([tlsa(2, 1, 1, root.cert)], sent), `no TLSA record matches the certificate of ${MX}`);

  const whole = await handshakeChain([leaf.cert, inter.cert, root.cert], leaf.key);
  assert.deepEqual(subjects(whole), [`CN=${MX}`, 'CN=DANE Test Intermediate', 'CN=DANE Test Root']);
  assert.equal(verify([tlsa(2, 0, 2, root.cert)], whole), 'ok record 0 depth 2');

  const disordered = await handshakeChain([leaf.cert, root.cert, inter.cert], leaf.key);
  assert.equal(verify([tlsa(2, 1, 1, inter.cert)], disordered), 'ok record 0 depth 1');

  const alone = await handshakeChain([selfSigned.cert], selfSigned.key);
  assert.deepEqual(subjects(alone), [`CN=${MX}`]);
  assert.equal(verify([tlsa(3, 1, 1, selfSigned.cert)], alone), 'ok record 0 depth 0');
});

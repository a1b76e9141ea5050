// DANE authentication of an SMTP server's certificate chain against its usable TLSA records
// (RFC 7672 §3.1): DANE-EE matches the leaf alone; DANE-TA matches a certificate the leaf chains
// up to, and then the leaf's dates and names count. Pure: the caller brings the chain and the time.
import { type X509Certificate, createHash } from 'node:crypto';
import { checkServerIdentity } from 'node:tls';
import type { TlsaRecord } from '../dns/client.js';
import { subjectPublicKeyInfo } from './spki.js';
import { DANE_EE, DANE_TA, DIGESTS, SELECTOR_SPKI, isUsable } from './tlsa.js';

type DaneVerdict =
  /** `depth`: where in the chain the matched certificate is, 0 for the leaf (DANE-EE). */
  | { ok: true; record: TlsaRecord; depth: number }
  /** `reason`: a few words for a log line and a `451 4.7.5` reply. */
  | { ok: false; reason: string };

/** Chains longer than this are not followed: more than any real server sends. */
const MAX_PATH = 8;

function matches(record: TlsaRecord, cert: X509Certificate): boolean {
  const selected = record.selector === SELECTOR_SPKI ? subjectPublicKeyInfo(cert.raw) : cert.raw;
  const digest = DIGESTS[record.matchingType];
  const data = digest ? createHash(digest.hash).update(selected).digest() : selected;
  return data.equals(record.data);
}

/**
 * The path from `cert` up to `anchor` through certificates of `pool`, each signed by the next:
 * built here rather than taken in the order given, since servers send their chains in any order.
 */
function pathTo(cert: X509Certificate, anchor: X509Certificate, pool: readonly X509Certificate[], path: X509Certificate[] = [cert]): X509Certificate[] | undefined {
  if (path.length > MAX_PATH) return undefined;
  for (const issuer of pool) {
    if (path.includes(issuer) || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) continue;
    if (issuer === anchor) return [...path, issuer];
    const found = pathTo(issuer, anchor, pool, [...path, issuer]);
    if (found) return found;
  }
  return undefined;
}

/** What is wrong with a path whose top matched a DANE-TA record, if anything. */
function pathProblem(path: readonly X509Certificate[], referenceNames: readonly string[], now: number): string | undefined {
  const host = referenceNames[0] ?? 'the server';
  const below = path.slice(0, -1);
  for (const [i, cert] of below.entries()) {
    const what = i === 0 ? `the certificate of ${host}` : `${cert.subject.replace(/\n/g, ', ')} in the chain of ${host}`;
    if (now < Date.parse(cert.validFrom)) return `${what} is not valid before ${cert.validFrom}`;
    if (now > Date.parse(cert.validTo)) return `${what} expired on ${cert.validTo}`;
  }
  const notCa = path.slice(1).find((cert) => !cert.ca);
  if (notCa) return `${notCa.subject.replace(/\n/g, ', ')} in the chain of ${host} is not a CA certificate`;
  // RFC 7672 §3.2: any of the reference identifiers will do; wildcards as tls_verify: host takes them.
  const legacy = path[0]!.toLegacyObject();
  if (referenceNames.some((name) => checkServerIdentity(name, legacy) === undefined)) return undefined;
  return `the certificate of ${host} names ${path[0]!.subjectAltName ?? path[0]!.subject}, not ${referenceNames.join(' or ')}`;
}

/**
 * `chain`: the server's certificates, its own first (`peerChain`). `referenceNames`: the names
 * the certificate may carry under DANE-TA, the MX host name first (it names the host in reasons).
 */
export function daneVerify(
  records: readonly TlsaRecord[], chain: readonly X509Certificate[], referenceNames: readonly string[], now = Date.now(),
): DaneVerdict {
  const host = referenceNames[0] ?? 'the server';
  const usable = records.filter(isUsable);
  const leaf = chain[0];
  if (usable.length === 0) return { ok: false, reason: `no usable TLSA record for ${host}` };
  if (!leaf) return { ok: false, reason: `${host} presented no certificate` };

  // §3.1.1: DANE-EE is the key itself, whatever the certificate's names and dates.
  const ee = usable.find((r) => r.usage === DANE_EE && matches(r, leaf));
  if (ee) return { ok: true, record: ee, depth: 0 };

  let problem: string | undefined;
  for (const record of usable.filter((r) => r.usage === DANE_TA)) {
    // The leaf itself is never a trust anchor, as in OpenSSL's DANE.
    for (const [depth, anchor] of chain.entries()) {
      if (depth === 0 || !matches(record, anchor)) continue;
      const path = pathTo(leaf, anchor, chain.slice(1));
      const found = path ? pathProblem(path, referenceNames, now) : `the certificate of ${host} does not chain up to its TLSA trust anchor`;
      if (found === undefined) return { ok: true, record, depth };
      problem ??= found;
    }
  }
  return { ok: false, reason: problem ?? `no TLSA record matches the certificate of ${host}` };
}

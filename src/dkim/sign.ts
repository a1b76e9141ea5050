// DKIM signatures (RFC 6376, RFC 8463) over a message as it will be stored. mailauth canonicalises
// the body and formats the DKIM-Signature field; Impulse chooses the signed fields (over-signing
// included, which mailauth's own signer cannot do), canonicalises them itself (see
// relaxedHeaderField) and signs with node's asynchronous crypto.sign, on libuv's pool, so the
// event loop never waits on an RSA operation.
import { createHash, sign } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { promisify } from 'node:util';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { generateCanonicalizedHeader } from 'mailauth/lib/dkim/header/index.js';
import { formatSignatureHeaderLine, parseHeaders } from 'mailauth/lib/tools.js';
import type { DkimKey } from './keys.js';

const signAsync = promisify(sign);
const CANONICALIZATION = 'relaxed/relaxed';
/** Body bytes hashed between two turns of the event loop: a 10 MB message never holds it for long. */
const HASH_SLICE = 1 << 20;
const HEADER_END = Buffer.from('\r\n\r\n');

/** Header block (its last CRLF included) and body of a CRLF message; no blank line: all header. */
function split(message: Buffer): { head: Buffer; body: Buffer } {
  const end = message.indexOf(HEADER_END);
  if (end < 0) return { head: message, body: Buffer.alloc(0) };
  return { head: message.subarray(0, end + 2), body: message.subarray(end + 4) };
}

async function bodyHash(body: Buffer): Promise<string> {
  const hasher = dkimBody(CANONICALIZATION, 'sha256', false);
  for (let at = 0; at < body.length; at += HASH_SLICE) {
    if (at > 0) await nextTurn();
    hasher.update(body.subarray(at, at + HASH_SLICE));
  }
  return hasher.digest('base64');
}

type Parsed = ReturnType<typeof parseHeaders>['parsed'];

/**
 * One header field in the relaxed canonical form of RFC 6376 §3.4.2, byte for byte: name in
 * lower case (ASCII letters only), unfolded, runs of SP and HTAB as one SP, none around the colon
 * or at the end. mailauth 4.13 (formatRelaxedLine) collapses every JavaScript \s of a Latin-1
 * reading instead, so a VT, an FF or an A0 byte (in UTF-8 the second byte of à, Š or Р, the last
 * of some CJK characters) would become a space in what Impulse signs but not in what a verifier
 * that follows the RFC hashes: such raw UTF-8 fields (RFC 6532) failed at dkimpy.
 */
export function relaxedHeaderField(line: Buffer): Buffer {
  const text = line.toString('latin1');
  const colon = text.indexOf(':');
  const name = text.slice(0, colon).replace(/[ \t]+$/, '').replace(/[A-Z]+/g, (s) => s.toLowerCase());
  const value = text.slice(colon + 1).replace(/\r?\n/g, '').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '');
  return Buffer.from(`${name}:${value}\r\n`, 'latin1');
}

/**
 * The fields `key` signs, bottom-up as RFC 6376 §5.4.2 has verifiers pick them, then each
 * over-signed name once more: an h= entry with no field left for it, so a From: added in transit
 * breaks the signature.
 */
function signedFields(parsed: Parsed, key: DkimKey): { keys: string; headers: Parsed } {
  const wanted = new Set(key.headers.map((h) => h.toLowerCase()));
  const headers = parsed.filter((h) => h.key !== null && wanted.has(h.key)).reverse();
  const names = [...headers.map((h) => h.casedKey ?? ''), ...key.oversignHeaders];
  return { keys: names.join(': '), headers };
}

/** DKIM-Signature fields, one per key, each ending in CRLF, to go on top of `message`. */
export async function dkimSignatures(message: Buffer, keys: readonly DkimKey[], now: number): Promise<string> {
  if (keys.length === 0) return '';
  const { head, body } = split(message);
  const bh = await bodyHash(body);
  const { parsed } = parseHeaders(head);
  const lines = await Promise.all(keys.map(async (key) => {
    const fields = signedFields(parsed, key);
    // mailauth canonicalises only the DKIM-Signature field here: it is ASCII, where its rule is right.
    const { canonicalizedHeader: signatureField, dkimHeaderOpts } = generateCanonicalizedHeader('DKIM', { keys: fields.keys, headers: [] }, {
      signingDomain: key.domain, selector: key.selector, algorithm: key.algorithm, canonicalization: CANONICALIZATION, bodyHash: bh,
      signTime: new Date(now), ...(key.expire !== undefined ? { expires: new Date(now + key.expire) } : {}),
    });
    const canonicalizedHeader = Buffer.concat([...fields.headers.map((h) => relaxedHeaderField(h.line)), signatureField]);
    // RFC 8463 §3: Ed25519 signs the SHA-256 of the canonicalised header, RSA signs it through its own digest.
    const signature = key.algorithm === 'rsa-sha256'
      ? await signAsync('sha256', canonicalizedHeader, key.key)
      : await signAsync(null, createHash('sha256').update(canonicalizedHeader).digest(), key.key);
    return `${formatSignatureHeaderLine('DKIM', { ...dkimHeaderOpts, b: signature.toString('base64') }, true)}\r\n`;
  }));
  return lines.join('');
}

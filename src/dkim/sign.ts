// DKIM signatures (RFC 6376, RFC 8463) over a message as it will be stored. Impulse canonicalises
// the body (mailauth where verifiers differ, or where it is large); it chooses the signed fields
// (over-signing included, which mailauth's own signer cannot do), canonicalises them itself
// (relaxed-header.ts), builds the DKIM-Signature field (signature-field.ts) and signs RSA with
// node's asynchronous crypto.sign, on libuv's pool, so the event loop never waits on an RSA
// operation.
import { createHash, sign } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { promisify } from 'node:util';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { parseHeaders } from 'mailauth/lib/tools.js';
import { onlyCrlf } from '../core/crlf.js';
import type { DkimKey } from './keys.js';
import { relaxedHeaderField } from './relaxed-header.js';
import { signatureField } from './signature-field.js';

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

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const ONE_SPACE = Buffer.from(' ');
const CRLF = Buffer.from('\r\n');
const isWsp = (b: number | undefined) => b === SP || b === HTAB;
/** Where the next match of `what` lies at or after `from`, or Infinity. */
const next = (body: Buffer, what: string | number, from: number) => {
  const at = body.indexOf(what, from);
  return at < 0 ? Infinity : at;
};

/**
 * The relaxed canonical body (RFC 6376 §3.4.4) of a body whose lines all end in CRLF, found with
 * native searches: only the runs of SP and HTAB that the canonical form changes are visited (a
 * run of two or more, or with an HTAB, becomes one SP; a run before a CRLF goes), the bytes
 * between them are copied as they stand. mailauth's canonicaliser walks every byte in
 * JavaScript (bench/dkim-body.mjs: 16 µs for 5 KB of text, 108 µs for 4.5 KB of indented HTML).
 * Undefined: a body with a bare CR or LF, or whose last line has no CRLF and ends in SP or HTAB:
 * verifiers differ there (mailauth 4 drops a run of two but keeps a single SP, dkimpy keeps one
 * SP for either), so such a body keeps mailauth's reading. Mail taken over SMTP never ends so:
 * its data ends in CRLF before the final dot.
 */
export function relaxedBody(body: Buffer): Buffer | undefined {
  if (isWsp(body[body.length - 1]) || !onlyCrlf(body)) return undefined;
  const parts: Buffer[] = [];
  let from = 0;
  let tab = next(body, HTAB, 0);
  let pair = next(body, '  ', 0);
  let atEnd = next(body, ' \r\n', 0);
  for (let hit = Math.min(tab, pair, atEnd); hit !== Infinity; hit = Math.min(tab, pair, atEnd)) {
    let start = hit;
    while (start > from && isWsp(body[start - 1])) start--;
    let stop = hit;
    while (isWsp(body[stop])) stop++;
    parts.push(body.subarray(from, start));
    // A CR is a line's end here: the body has none without its LF.
    if (body[stop] !== CR) parts.push(ONE_SPACE);
    from = stop;
    if (tab < stop) tab = next(body, HTAB, stop);
    if (pair < stop) pair = next(body, '  ', stop);
    if (atEnd < stop) atEnd = next(body, ' \r\n', stop);
  }
  parts.push(body.subarray(from));
  const canonical = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  // Empty lines at the end are ignored; a body that is not empty then ends in one CRLF.
  let end = canonical.length;
  while (end >= 2 && canonical[end - 2] === CR && canonical[end - 1] === LF) end -= 2;
  if (end === 0) return Buffer.alloc(0);
  return end + 2 <= canonical.length ? canonical.subarray(0, end + 2) : Buffer.concat([canonical.subarray(0, end), CRLF]);
}

async function bodyHash(body: Buffer): Promise<string> {
  // A larger body is canonicalised in slices, between turns of the event loop.
  const canonical = body.length <= HASH_SLICE ? relaxedBody(body) : undefined;
  if (canonical) return createHash('sha256').update(canonical).digest('base64');
  const hasher = dkimBody(CANONICALIZATION, 'sha256', false);
  for (let at = 0; at < body.length; at += HASH_SLICE) {
    if (at > 0) await nextTurn();
    hasher.update(body.subarray(at, at + HASH_SLICE));
  }
  return hasher.digest('base64');
}

type Parsed = ReturnType<typeof parseHeaders>['parsed'];

/**
 * The fields `key` signs, bottom-up as RFC 6376 §5.4.2 has verifiers pick them, then each
 * over-signed name once more: an h= entry with no field left for it, so a From: added in transit
 * breaks the signature.
 */
function signedFields(parsed: Parsed, key: DkimKey): { names: string[]; headers: Parsed } {
  const wanted = new Set(key.headers.map((h) => h.toLowerCase()));
  const headers = parsed.filter((h) => h.key !== null && wanted.has(h.key)).reverse();
  const names = [...headers.map((h) => h.casedKey ?? ''), ...key.oversignHeaders];
  return { names, headers };
}

/** DKIM-Signature fields, one per key, each ending in CRLF, to go on top of `message`. */
export async function dkimSignatures(message: Buffer, keys: readonly DkimKey[], now: number): Promise<string> {
  if (keys.length === 0) return '';
  const { head, body } = split(message);
  const bh = await bodyHash(body);
  const { parsed } = parseHeaders(head);
  const lines = await Promise.all(keys.map(async (key) => {
    const fields = signedFields(parsed, key);
    const field = signatureField({
      algorithm: key.algorithm, domain: key.domain, selector: key.selector, signedAt: Math.floor(now / 1000),
      expiresAt: key.expire !== undefined ? Math.floor((now + key.expire) / 1000) : undefined, bodyHash: bh, headers: fields.names,
    });
    const canonicalizedHeader = Buffer.concat([...fields.headers.map((h) => relaxedHeaderField(h.line)), field.canonical]);
    // RFC 8463 §3: Ed25519 signs the SHA-256 of the canonicalised header, RSA signs it through its
    // own digest. An Ed25519 signature takes some 60 µs; handing it to the pool and back would cost
    // the event loop more than that, so it is made here.
    const signature = key.algorithm === 'rsa-sha256'
      ? await signAsync('sha256', canonicalizedHeader, key.key)
      : sign(null, createHash('sha256').update(canonicalizedHeader).digest(), key.key);
    return field.complete(signature);
  }));
  return lines.join('');
}

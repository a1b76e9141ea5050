// The DKIM-Signature header field (RFC 6376 §3.5): its tags folded into lines of at most 78
// characters, and its relaxed canonical form with b= empty, which the signature covers.
// mailauth's formatter passes the field through a general-purpose line folder and punycode at
// every call, and its canonicaliser formats the field a second time: together a twentieth of the
// daemon's CPU on W5 with signing on. Domain and selector are ASCII already (the config's rule).
import { relaxedHeaderField } from './relaxed-header.js';

const NAME = 'DKIM-Signature:';
/** RFC 5322 §2.1.1's recommended line length, CRLF excluded. */
const WIDTH = 78;
const FOLD = '\r\n\t';

interface SignatureTags {
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  domain: string;
  selector: string;
  /** t=, in seconds since the epoch. */
  signedAt: number;
  /** x=, in seconds since the epoch; none when undefined. */
  expiresAt: number | undefined;
  /** bh=, base64. */
  bodyHash: string;
  /** h=, in the order the verifier takes them. */
  headers: readonly string[];
}

interface SignatureField {
  /** What the signature is computed over, after the signed fields: relaxed, b= empty, no CRLF. */
  canonical: Buffer;
  /** The whole field with `signature` in b=, folded, ending in CRLF. */
  complete(signature: Buffer): string;
}

/**
 * Pieces of the field up to `b=`; `gap` is what goes before a piece when it stays on the line: a
 * space between tags, nothing between h= names (a fold there is FWS, which h= allows around ":").
 */
function pieces(t: SignatureTags): Array<{ text: string; gap: string }> {
  const tags = [
    'v=1;', `a=${t.algorithm};`, 'c=relaxed/relaxed;', `d=${t.domain};`, `s=${t.selector};`, `t=${t.signedAt};`,
    ...(t.expiresAt !== undefined ? [`x=${t.expiresAt};`] : []), `bh=${t.bodyHash};`,
  ].map((text) => ({ text, gap: ' ' }));
  const last = t.headers.length - 1;
  const names = t.headers.map((h, i) => ({ text: `${i === 0 ? 'h=' : ''}${h}${i === last ? ';' : ':'}`, gap: i === 0 ? ' ' : '' }));
  return [...tags, ...names, { text: 'b=', gap: ' ' }];
}

export function signatureField(tags: SignatureTags): SignatureField {
  let text = NAME;
  let column = NAME.length;
  for (const { text: piece, gap } of pieces(tags)) {
    if (column + gap.length + piece.length > WIDTH) {
      text += FOLD + piece;
      column = 1 + piece.length;
    } else {
      text += gap + piece;
      column += gap.length + piece.length;
    }
  }
  const relaxed = relaxedHeaderField(Buffer.from(text, 'latin1'));
  return {
    canonical: relaxed.subarray(0, relaxed.length - 2),
    complete(signature: Buffer): string {
      // base64 has no place to fold but anywhere: FWS inside b= is ignored by verifiers.
      const b64 = signature.toString('base64');
      const first = Math.max(0, WIDTH - column);
      let out = text + b64.slice(0, first);
      for (let at = first; at < b64.length; at += WIDTH - 1) out += FOLD + b64.slice(at, at + WIDTH - 1);
      return `${out}\r\n`;
    },
  };
}

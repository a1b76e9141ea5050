// The TLSA parameters RFC 7672 lets an SMTP client use (§3.1: DANE-TA and DANE-EE only; PKIX
// usages say nothing to a client with no fixed set of trusted CAs), and which records those are.
import type { TlsaRecord } from '../dns/client.js';

export const DANE_TA = 2;
export const DANE_EE = 3;
/** Selector 0: the whole certificate; 1: its SubjectPublicKeyInfo. */
export const SELECTOR_SPKI = 1;

/** Matching type → the digest it names (0: the data itself); a digest must have that hash's length. */
export const DIGESTS: Record<number, { hash: 'sha256' | 'sha512'; length: number } | undefined> = {
  1: { hash: 'sha256', length: 32 },
  2: { hash: 'sha512', length: 64 },
};

export function isUsable(r: TlsaRecord): boolean {
  if (r.usage !== DANE_TA && r.usage !== DANE_EE) return false;
  if (r.selector !== 0 && r.selector !== SELECTOR_SPKI) return false;
  if (r.matchingType === 0) return r.data.length > 0;
  // A digest of the wrong length is malformed: OpenSSL's DANE refuses such a record (bad digest length).
  return DIGESTS[r.matchingType]?.length === r.data.length;
}

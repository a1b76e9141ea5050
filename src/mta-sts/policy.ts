// An MTA-STS policy (RFC 8461) as Impulse keeps it: parsed by mailauth, stamped with the id of the
// TXT record it was fetched under and the time it expires, and the MX host patterns it allows.
import { parsePolicy } from 'mailauth/lib/mta-sts.js';

type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  /** The `id=` of the `_mta-sts` TXT record the policy was fetched under. */
  id: string;
  mode: StsMode;
  /** MX host patterns, lower case; `*.` covers exactly one leftmost label. */
  mx: string[];
  /** Seconds, as the policy says (max_age). */
  maxAge: number;
  fetchedAt: number;
  expiresAt: number;
}

/** RFC 8460 result types of policy discovery. */
type StsDiscoveryResult = 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid';

/** A policy discovery that went wrong, with the TLS-RPT result type it counts as. */
export class StsError extends Error {
  constructor(readonly resultType: StsDiscoveryResult, message: string) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** The policy in `text`, fetched under TXT id `id` at `now`; StsError('sts-policy-invalid') when it is not one. */
export function readPolicy(text: string, id: string, now: number): StsPolicy {
  let parsed: ReturnType<typeof parsePolicy>;
  try {
    parsed = parsePolicy(text);
  } catch (err) {
    throw new StsError('sts-policy-invalid', `invalid policy: ${(err as Error).message}`);
  }
  const maxAge = parsed.maxAge ?? 0;
  return { id, mode: parsed.mode, mx: parsed.mx ?? [], maxAge, fetchedAt: now, expiresAt: now + maxAge * 1000 };
}

/**
 * True when MX host `host` matches one of `patterns` (RFC 8461 §4.1): equal, or one label
 * followed by a `*.` pattern's suffix. Written here rather than taken from mailauth's validateMx,
 * which lets a wildcard cover any number of labels.
 */
export function mxAllowed(host: string, patterns: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((p) => {
    if (!p.startsWith('*.')) return p === name;
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1) === p.slice(2);
  });
}

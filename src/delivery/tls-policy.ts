// Outbound TLS policy (tls, tls_verify, tls_ifavailable_fallback; see docs/tls.md): the TLS
// options a connection attempt hands to STARTTLS, and whether an open session may carry the mail
// of another domain sharing its MX.
import { isIP } from 'node:net';
import { type ConnectionOptions, type SecureContext, checkServerIdentity } from 'node:tls';
import type { ScopedValues } from '../config/scopes.js';
import type { PolicyCheck, TlsRequirement } from './tls-requirement.js';

export type TlsMode = 'ifavailable' | 'required' | 'no';
/** What the server's certificate must prove: nothing, a trusted chain, or a trusted chain naming the MX host. */
type TlsVerify = 'no' | 'ca' | 'host';

export interface TlsPolicy {
  tls: TlsMode;
  tlsVerify: TlsVerify;
  /** With tls: ifavailable, a failed TLS handshake is followed by a plain-text session (true) or a deferral (false). */
  tlsIfavailableFallback: boolean;
}

/** How TLS came about on an open session. */
export interface TlsOutcome {
  /** What the certificate was verified for; 'no' on a plain session or unverified TLS. */
  verified: TlsVerify;
  /** Why the TLS session failed before this plain-text one was opened instead, if it did. */
  fallback?: string;
  /** The verdict under the destination's published policy, when one applied. */
  policy?: PolicyCheck;
}

const STRENGTH: Record<TlsVerify, number> = { no: 0, ca: 1, host: 2 };

/** Options for the TLS handshake with MX `host` under `verify`, trusting `trust` (Node's default roots without it). */
export function tlsOptions(host: string, verify: TlsVerify, trust: SecureContext | undefined): ConnectionOptions {
  return {
    ...(trust ? { secureContext: trust } : {}),
    // RFC 6066 §3: SNI carries host names only; an IP route gets none.
    ...(isIP(host) ? {} : { servername: host }),
    // Opportunistic TLS authenticates nobody, so only a verifying policy refuses a certificate.
    rejectUnauthorized: verify !== 'no',
    // The name checked is the MX name from DNS (RFC 7817, as RFC 7672 and RFC 8461 do), never the address.
    checkServerIdentity: verify === 'host' ? (_servername, cert) => checkServerIdentity(host, cert) : () => undefined,
  };
}

/** A domain's TLS options as the scheduler reads them. */
export type ScopedTls = Pick<ScopedValues, 'tls' | 'tls_verify' | 'tls_ifavailable_fallback'>;

/**
 * Whether a session to MX `host`, opened for another domain, meets the TLS policy `o` of a domain
 * whose MX names are `mxHosts`, and what that domain's published policy asks of its MX behind
 * the session (`requirement`): a connection migrating between siblings must not carry mail over
 * less than that domain's own connection would have insisted on.
 */
export function tlsCarries(session: { secure: boolean; tls: TlsOutcome }, host: string, o: ScopedTls, mxHosts: readonly string[], requirement: TlsRequirement): boolean {
  if (requirement.kind === 'refused') return false;
  // TLSA records belong to a host name and port: a session DANE vouched for under the same records serves any domain reaching it.
  if (requirement.kind === 'dane') {
    const p = session.tls.policy;
    return p?.policy.type === 'tlsa' && p.result === 'success' && p.policy.id === requirement.policy.id;
  }
  if (requirement.kind === 'dane-encrypt') return session.secure;
  // Host verification proved `host`, which must be an MX name of the sibling its policy allowed.
  if (requirement.kind === 'sts-enforce') return session.secure && session.tls.verified === 'host' && mxHosts.includes(host);
  // Testing mode carries as the options say: the site judges the session under the sibling's
  // policy when the sibling first rides it, and reports what enforce would have refused.
  if (o.tls === 'no') return true;
  if (!session.secure) {
    if (o.tls === 'required') return false;
    if (session.tls.fallback !== undefined && !o.tls_ifavailable_fallback) return false;
    // A plain session does not tell whether STARTTLS was offered; a verifying domain opens its own.
    return o.tls_verify === 'no';
  }
  if (STRENGTH[session.tls.verified] < STRENGTH[o.tls_verify]) return false;
  // Host verification proved the name it was made for; a sibling reached by address only has other names.
  return o.tls_verify !== 'host' || mxHosts.includes(host);
}

// Whether an RRset is DNSSEC-secure as the validating resolver says (the AD bit): DANE applies only
// to MX hosts named by a secure MX RRset (RFC 7672 §2.2.1), and a failed TLSA lookup defers only
// for a host whose address records are secure (§2.2).
import type { DnsClient } from '../dns/client.js';

/** `secure` also for an authenticated denial (NXDOMAIN, NODATA): the zone is signed. */
export type DnssecStatus = { kind: 'secure' } | { kind: 'insecure' } | { kind: 'failed'; reason: string };

async function rrsetSecurity(client: DnsClient, name: string, type: 'MX' | 'A'): Promise<DnssecStatus> {
  const r = await client.query(name, type);
  if (r.kind === 'failed') return { kind: 'failed', reason: `${type} lookup of ${name} failed: ${r.reason}` };
  return { kind: r.authenticated ? 'secure' : 'insecure' };
}

/** The MX RRset of `domain`. */
export function mxSecurity(client: DnsClient, domain: string): Promise<DnssecStatus> {
  return rrsetSecurity(client, domain, 'MX');
}

/** The address records of an MX host (A: an AAAA-only host answers a secure NODATA, which says as much). */
export function addressSecurity(client: DnsClient, host: string): Promise<DnssecStatus> {
  return rrsetSecurity(client, host, 'A');
}

// The TLSA lookup of RFC 7672 §2.2 for one MX host and port, told apart by what it means for the
// connection: DANE applies, the host has DANE but nothing usable, no DANE, or the lookup failed.
import type { DnsClient, TlsaRecord } from '../dns/client.js';
import { isUsable } from './tlsa.js';

export type TlsaLookup =
  /** Authenticated records, only the usable ones: the session must be TLS matching one of them. */
  | { kind: 'secure'; records: TlsaRecord[] }
  /** Authenticated records, none usable: TLS is mandatory, but authenticates nothing (§2.2). */
  | { kind: 'secure-unusable' }
  /** A secure denial (NXDOMAIN or NODATA): the host has no DANE. */
  | { kind: 'none' }
  /** An answer, or a denial, without the AD bit: nothing DNS says about the host can be trusted, so no DANE. */
  | { kind: 'insecure' }
  /**
   * SERVFAIL, a timeout, a refusal. §2.2: the host may have records an attacker is hiding, so
   * the caller defers when the host's address records are secure (see `addressSecurity`).
   */
  | { kind: 'failed'; reason: string };

/** The TLSA base name of RFC 6698 §3: `_<port>._tcp.<host>`. */
export function tlsaName(host: string, port: number): string {
  return `_${port}._tcp.${host.toLowerCase().replace(/\.$/, '')}`;
}

export async function lookupTlsa(client: DnsClient, host: string, port: number): Promise<TlsaLookup> {
  const name = tlsaName(host, port);
  const r = await client.query(name, 'TLSA');
  if (r.kind === 'failed') return { kind: 'failed', reason: `TLSA lookup of ${name} failed: ${r.reason}` };
  if (!r.authenticated) return { kind: 'insecure' };
  if (r.kind !== 'answer') return { kind: 'none' };
  const records = r.records.filter(isUsable);
  return records.length > 0 ? { kind: 'secure', records } : { kind: 'secure-unusable' };
}

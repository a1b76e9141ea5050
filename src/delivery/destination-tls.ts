// Learns a destination's published TLS policies beside its MX lookup: MTA-STS discovery runs
// while the MX records are looked up, and DANE's DNSSEC questions (is the MX RRset signed; per MX
// host, its TLSA records and whether its address records are signed) as soon as the MX hosts
// are known, all of them at once.
import { addressSecurity, mxSecurity } from '../dane/dnssec.js';
import { lookupTlsa } from '../dane/lookup.js';
import type { DnsClient } from '../dns/client.js';
import type { StsDiscovery } from '../mta-sts/discovery.js';
import type { LookupResult } from './route.js';
import type { DaneState, DestinationTls, PolicySwitches } from './tls-requirement.js';

export class DestinationPolicies {
  /** A source absent: that policy is never looked up (tests of the core without DNS or HTTPS). */
  constructor(private readonly sources: { sts?: StsDiscovery; dnssec?: DnsClient }) {}

  /**
   * What `wants` asks for, once `targets` (the MX lookup in flight) has settled; `routed` says the
   * domain has a static route, which no DNSSEC vouches for. Never rejects: a failure is a state.
   */
  async lookup(domain: string, wants: PolicySwitches, targets: Promise<LookupResult>, routed: boolean): Promise<DestinationTls> {
    const sts = wants.mta_sts ? this.sources.sts?.discover(domain) : undefined;
    const client = this.sources.dnssec;
    const dane = wants.dane && client && !routed ? targets.then((t) => (t.kind === 'targets' ? daneState(client, domain, t.targets) : undefined)) : undefined;
    const [s, d] = await Promise.all([sts, dane]);
    return { ...(s ? { sts: s } : {}), ...(d ? { dane: d } : {}) };
  }
}

async function daneState(client: DnsClient, domain: string, targets: ReadonlyArray<{ host: string; port: number }>): Promise<DaneState> {
  const mx = await mxSecurity(client, domain);
  if (mx.kind !== 'secure') return { mx, hosts: {} };
  const hosts = [...new Map(targets.map((t) => [t.host, t.port])).entries()];
  const found = await Promise.all(hosts.map(async ([host, port]) => {
    const [tlsa, address] = await Promise.all([lookupTlsa(client, host, port), addressSecurity(client, host)]);
    return [host, { tlsa, address }] as const;
  }));
  return { mx, hosts: Object.fromEntries(found) };
}

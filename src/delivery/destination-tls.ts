// Learns a destination's published TLS policies beside its MX lookup: MTA-STS discovery runs
// while the MX records are looked up, so a policy adds no wait of its own to a domain's first
// connection beyond the slower of the two.
import type { StsDiscovery } from '../mta-sts/discovery.js';
import type { DestinationTls, PolicySwitches } from './tls-requirement.js';

export class DestinationPolicies {
  /** `sts` absent: no discovery (tests of the core that have no policy server). */
  constructor(private readonly sources: { sts?: StsDiscovery }) {}

  /** Starts what `wants` asks for; the promise holds what was learnt. Never rejects: a failure is a state. */
  lookup(domain: string, wants: PolicySwitches): Promise<DestinationTls> {
    const sts = wants.mta_sts ? this.sources.sts?.discover(domain) : undefined;
    return sts ? sts.then((s) => ({ sts: s })) : Promise.resolve({});
  }
}

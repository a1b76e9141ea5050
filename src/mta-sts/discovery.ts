// MTA-STS policy discovery for one policy domain (RFC 8461 §3, §5.1): the `_mta-sts` TXT record
// through the configured resolver, the policy fetched again only when its id changed or the cached
// copy expired, and a cached policy kept in force when a refresh fails. Run with each MX lookup,
// so a domain's policy is as fresh as its MX records.
import type { Logger } from 'pino';
import { resolvePolicy } from 'mailauth/lib/mta-sts.js';
import type { DnsResolver } from '../dns/resolver.js';
import type { PolicyCache } from './cache.js';
import type { PolicyFetcher } from './fetch.js';
import { type StsPolicy, StsError, readPolicy } from './policy.js';

/** What delivery knows of a domain's MTA-STS policy. */
export type StsState =
  /** No `_mta-sts` TXT record and nothing cached: the domain has no policy. */
  | { kind: 'none' }
  /** A policy in force; `stale` says why a refresh (TXT or fetch) failed while the cached one was kept. */
  | { kind: 'policy'; policy: StsPolicy; stale?: string }
  /** The TXT record says there is a policy but none could be had: delivered as without one (RFC 8461 §5). */
  | { kind: 'unavailable'; id: string | undefined; error: StsError };

interface DiscoveryDeps {
  resolver: DnsResolver;
  fetch: PolicyFetcher;
  cache: PolicyCache;
  now(): number;
  log: Logger;
}

export class StsDiscovery {
  constructor(private readonly deps: DiscoveryDeps) {}

  async discover(domain: string): Promise<StsState> {
    const { log } = this.deps;
    const now = this.deps.now();
    const cached = await this.deps.cache.get(domain).catch((err: Error) => {
      log.warn({ event: 'mta_sts_cache_error', domain, err: err.message }, 'MTA-STS policy cache unreadable; looking the policy up afresh');
      return undefined;
    });
    const live = cached && cached.expiresAt > now ? cached : undefined;

    let id: string | false;
    try {
      id = await resolvePolicy(domain, { resolver: (name, type) => (type === 'TXT' ? this.deps.resolver.resolveTxt(name) : Promise.resolve([])) });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'multi_sts_records' ? 'more than one v=STSv1 TXT record' : `TXT lookup failed (${e.code ?? e.message})`;
      if (live) return { kind: 'policy', policy: live, stale: `_mta-sts.${domain}: ${why}` };
      return { kind: 'unavailable', id: undefined, error: new StsError('sts-policy-fetch-error', `_mta-sts.${domain}: ${why}`) };
    }
    // RFC 8461 §8.3: a domain leaves MTA-STS by publishing mode none, so a vanished TXT record
    // leaves a cached policy in force until it expires.
    if (id === false) return live ? { kind: 'policy', policy: live } : { kind: 'none' };
    if (live && live.id === id) return { kind: 'policy', policy: live };

    try {
      const policy = readPolicy(await this.deps.fetch(domain), id, now);
      await this.deps.cache.put(domain, policy).catch((err: Error) => {
        log.warn({ event: 'mta_sts_cache_error', domain, err: err.message }, 'MTA-STS policy not cached');
      });
      log.info({ event: 'mta_sts_policy', domain, id, mode: policy.mode, mx: policy.mx, max_age: policy.maxAge }, 'MTA-STS policy fetched');
      return { kind: 'policy', policy };
    } catch (err) {
      const e = err instanceof StsError ? err : new StsError('sts-policy-fetch-error', (err as Error).message);
      log.warn({ event: 'mta_sts_fetch_failed', domain, id, result_type: e.resultType, reason: e.message, kept: live?.id },
        live ? 'MTA-STS policy refresh failed; the cached policy stays in force' : 'MTA-STS policy could not be fetched; delivering as without one');
      if (live) return { kind: 'policy', policy: live, stale: e.message };
      return { kind: 'unavailable', id, error: e };
    }
  }
}

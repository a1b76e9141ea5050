// The cluster's shared limits on delivery, asked by this node before it opens a connection or
// starts a message: leases under cluster_max_outbound_connections (per binding × domain, and per
// MX host from `hosts:`) and the cluster throttles. Nothing is asked of Redis for a pair none of
// them applies to, so a node with no cluster limit pays no round trip. A connection moving to a
// sibling domain takes that pair's lease before it moves, and keeps the leases of the pairs it
// served before: it may go back to them without another round trip, and the cluster counts it
// under every pair it may serve, so no pair ever has more than its limit.
import type { DeliveryOptions } from '../config/delivery-options.js';
import { type Reply, reply } from '../core/reply.js';
import type { ClusterThrottles } from './gcra.js';
import type { ClusterLeases, Lease } from './leases.js';

/** The leases a connection holds until it closes. */
export interface ClusterPermit {
  release(): void;
}

/** A connection's leases by key: its MX host's, and each binding × domain's it has served. */
class Permit implements ClusterPermit {
  readonly held = new Map<string, Lease>();

  constructor(private readonly leases: ClusterLeases) {}

  release(): void {
    for (const lease of this.held.values()) this.leases.release(lease);
    this.held.clear();
  }
}

/** A lease taken for the binding × domain a connection is about to serve, not yet the connection's. */
export interface PairLease {
  /** The connection's permit from now on, this lease added to those it holds. */
  adopt(permit: ClusterPermit | undefined): ClusterPermit;
  /** The move did not happen: the lease goes back. */
  drop(): void;
}

/** Let in, or a wait: `retry` settles when asking again is worth it (a lease freed or lapsed, the throttle's next slot). */
type GateAnswer = { permit: ClusterPermit } | { retry: Promise<void>; reply: Reply };

const pairKey = (binding: string, domain: string) => `pair:${binding}:${domain}`;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** How long a pair waits after Redis failed to answer a lease or throttle question. */
const REDIS_ERROR_RETRY_MS = 1000;

export class ClusterGate {
  constructor(private readonly deps: { leases: ClusterLeases; throttles: ClusterThrottles; options: DeliveryOptions }) {}

  /**
   * What a new connection of (binding, domain) to MX `host` needs from the cluster, or undefined
   * when no cluster limit applies to it. Leases are taken before the throttle, and given back if
   * the throttle refuses, so a refused pair holds nothing.
   */
  enter(binding: string, domain: string, host: string): Promise<GateAnswer> | undefined {
    const { options } = this.deps;
    const o = options.of(binding, domain);
    const limits: Array<{ key: string; limit: number; what: string }> = [];
    if (o.cluster_max_outbound_connections !== undefined) {
      limits.push({ key: pairKey(binding, domain), limit: o.cluster_max_outbound_connections, what: `binding ${binding} to ${domain}` });
    }
    const hostLimit = options.hostClusterLimit(host);
    if (hostLimit !== undefined) limits.push({ key: `host:${host.toLowerCase()}`, limit: hostLimit, what: `MX host ${host}` });
    const rate = o.cluster_outbound_throttle_connections;
    if (limits.length === 0 && !rate) return undefined;
    return this.admit(limits, rate ? { key: options.scopeOf(binding, domain, 'cluster_outbound_throttle_connections'), rate } : undefined)
      .catch((err: Error) => ({
        retry: sleep(REDIS_ERROR_RETRY_MS),
        reply: reply(451, '4.3.0', `[internal] cluster limits of binding ${binding} to ${domain} cannot be read from Redis: ${err.message}`),
      }));
  }

  /** Ms until cluster_outbound_throttle_messages lets a message of (binding, domain) start, taking one when 0; undefined when unset. */
  message(binding: string, domain: string): Promise<number> | undefined {
    const rate = this.deps.options.of(binding, domain).cluster_outbound_throttle_messages;
    if (!rate) return undefined;
    return this.deps.throttles.take(this.deps.options.scopeOf(binding, domain, 'cluster_outbound_throttle_messages'), rate)
      .catch(() => REDIS_ERROR_RETRY_MS);
  }

  /**
   * Whether a connection holding `permit` may serve (binding, domain) as it is: the pair has no
   * cluster_max_outbound_connections, or the connection holds its lease already.
   */
  covers(permit: ClusterPermit | undefined, binding: string, domain: string): boolean {
    if (this.deps.options.of(binding, domain).cluster_max_outbound_connections === undefined) return true;
    return permit instanceof Permit && permit.held.has(pairKey(binding, domain));
  }

  /**
   * The lease of (binding, domain) for a connection moving to serve it, or undefined when that pair
   * has its limit's worth across the cluster (or Redis cannot say): then the connection stays.
   */
  async movePair(binding: string, domain: string): Promise<PairLease | undefined> {
    const { leases } = this.deps;
    const key = pairKey(binding, domain);
    const limit = this.deps.options.of(binding, domain).cluster_max_outbound_connections;
    if (limit === undefined) return { adopt: (permit) => permit ?? new Permit(leases), drop: () => {} };
    const got = await leases.acquire(key, limit).catch(() => undefined);
    if (got === undefined || 'freed' in got) return undefined;
    return {
      adopt: (permit) => {
        const p = permit instanceof Permit ? permit : new Permit(leases);
        p.held.set(key, got.lease);
        return p;
      },
      drop: () => leases.release(got.lease),
    };
  }

  private async admit(limits: Array<{ key: string; limit: number; what: string }>, throttle: { key: string; rate: { count: number; perMs: number } } | undefined): Promise<GateAnswer> {
    const permit = new Permit(this.deps.leases);
    try {
      for (const l of limits) {
        const got = await this.deps.leases.acquire(l.key, l.limit);
        if ('freed' in got) {
          permit.release();
          return { retry: got.freed, reply: reply(451, '4.4.5', `[internal] cluster_max_outbound_connections (${l.limit}) of ${l.what} reached across the cluster`) };
        }
        permit.held.set(l.key, got.lease);
      }
      if (throttle) {
        const wait = await this.deps.throttles.take(throttle.key, throttle.rate);
        if (wait > 0) {
          permit.release();
          return { retry: sleep(wait), reply: reply(451, '4.4.5', `[internal] cluster_outbound_throttle_connections of ${throttle.key} allows the next connection in ${wait} ms`) };
        }
      }
    } catch (err) {
      permit.release();
      throw err;
    }
    return { permit };
  }
}

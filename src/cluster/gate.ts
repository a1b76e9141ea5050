// The cluster's shared limits on delivery, asked by this node before it opens a connection or
// starts a message: leases under cluster_max_outbound_connections (per binding × domain, and per
// MX host from `hosts:`) and the cluster throttles. Nothing is asked of Redis for a pair none of
// them applies to, so a node with no cluster limit pays no round trip.
import type { DeliveryOptions } from '../config/delivery-options.js';
import { type Reply, reply } from '../core/reply.js';
import type { ClusterThrottles } from './gcra.js';
import type { ClusterLeases, Lease } from './leases.js';

/** The leases a connection holds until it closes. */
export interface ClusterPermit {
  release(): void;
}

/** Let in, or a wait: `retry` settles when asking again is worth it (a lease freed or lapsed, the throttle's next slot). */
type GateAnswer = { permit: ClusterPermit } | { retry: Promise<void>; reply: Reply };

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
      limits.push({ key: `pair:${binding}:${domain}`, limit: o.cluster_max_outbound_connections, what: `binding ${binding} to ${domain}` });
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

  private async admit(limits: Array<{ key: string; limit: number; what: string }>, throttle: { key: string; rate: { count: number; perMs: number } } | undefined): Promise<GateAnswer> {
    const held: Lease[] = [];
    const permit = { release: () => held.splice(0).forEach((l) => this.deps.leases.release(l)) };
    try {
      for (const l of limits) {
        const got = await this.deps.leases.acquire(l.key, l.limit);
        if ('freed' in got) {
          permit.release();
          return { retry: got.freed, reply: reply(451, '4.4.5', `[internal] cluster_max_outbound_connections (${l.limit}) of ${l.what} reached across the cluster`) };
        }
        held.push(got.lease);
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

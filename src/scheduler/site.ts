// Domains sharing MX hosts. The domains of one binding whose first MX host is the same are a site
// with one connection goal (KumoMTA's site), and connections move between sibling domains (any MX
// host or address in common, Momentum's migration): an emptied connection goes to a sibling with
// mail, a busy site lends connections to a sibling that has none, and a queue takes over idle
// connections of its binding before it opens its own. A move never lowers a domain's TLS policy,
// and one to a pair the cluster counts connections for takes that pair's lease first.
import type { Logger } from 'pino';
import type { ClusterPermit, PairLease } from '../cluster/gate.js';
import type { Clock } from '../core/clock.js';
import type { DeliveryOptions } from '../config/delivery-options.js';
import type { DomainRecord } from '../delivery/domain-record.js';
import type { Target } from '../delivery/route.js';
import { tlsCarries } from '../delivery/tls-policy.js';
import { type PolicyCheck, type TlsRequirement, requirementFor } from '../delivery/tls-requirement.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { Dispatcher } from './dispatcher.js';
import { connectionGoal } from './policy.js';
import { type Holds, type ReadyQueue, heldBy } from './ready-queue.js';

/** A site's connections and backlog for one binding, as last summed. */
interface SiteStats {
  at: number;
  open: number;
  backlog: number;
}

interface Site {
  members: Set<DomainRecord>;
  stats: Map<string, SiteStats>;
}

/**
 * A large site's connection and backlog counts are summed at most this often (openings in between
 * are added); a site of up to SUM_ALWAYS domains is summed every time, so a domain alone on its MX
 * host sees its own goal exactly.
 */
const STATS_MS = 100;
const SUM_ALWAYS = 16;
/** Queues a connection looks through for a starving sibling after each message. */
const STARVING_SCAN = 32;
/**
 * Messages a connection carries for one queue before it is lent to a sibling queue that has no
 * connection, even if that leaves its own queue without one: the site's connections take turns.
 */
export const LEND_QUANTUM = 10;

interface SitesDeps {
  clock: Pick<Clock, 'now'>;
  log: Logger;
  hooks: HookRegistry;
  holds: Holds;
  options: DeliveryOptions;
  observer: { migrated(): void };
  /** New connections (or moved ones) the queue may take now under its goal and caps. */
  room(queue: ReadyQueue): number;
  /** The domain's ready queue for the binding, if it has one. */
  queueOf(record: DomainRecord, binding: string): ReadyQueue | undefined;
  /** A connection moved from `src` to `dest`. */
  moved(src: ReadyQueue, dest: ReadyQueue): void;
  /** Whether a connection holding `permit` may serve (binding, domain) without taking its cluster lease. */
  covers(permit: ClusterPermit | undefined, binding: string, domain: string): boolean;
  /** The cluster lease of (binding, domain) a connection takes before it moves there; undefined: none to be had now. */
  movePair(binding: string, domain: string): Promise<PairLease | undefined>;
  /** A session judged under a sibling's published policy as the sibling first rode it; `mxHost`, the sibling's name for the MX. */
  policyChecked(conn: Dispatcher, check: PolicyCheck, mxHost: string): void;
}

export class Sites {
  private readonly sites = new Map<string, Site>();
  /** The site each domain is filed in: its first MX host, as last resolved. */
  private readonly siteKeys = new Map<DomainRecord, string>();
  /** Queues with mail and no connection, waiting for a sibling's connection to come over. */
  private readonly starving = new Set<ReadyQueue>();
  /** Queues that have (or had) held mail: where an emptied connection looks for a sibling. */
  private readonly withMail = new Set<ReadyQueue>();

  constructor(private readonly deps: SitesDeps) {}

  /** Migration and sites are on (migrate_connections_between_sibling_domains). */
  get enabled(): boolean {
    return this.deps.options.global.migrate_connections_between_sibling_domains;
  }

  noteMail(queue: ReadyQueue): void {
    this.withMail.add(queue);
  }

  /**
   * How many more connections the queue's site may open now: the goal over the site's whole
   * backlog, on the asking domain's own curve up to its max_outbound_connections, less what the
   * site has open. Unbounded without migration.
   */
  room(queue: ReadyQueue, now: number): number {
    const key = this.enabled ? this.file(queue.record) : undefined;
    if (key === undefined) return Number.POSITIVE_INFINITY;
    const stats = this.statsOf(key, queue.binding.name, now);
    const o = this.deps.options.of(queue.binding.name, queue.domain);
    return connectionGoal(stats.backlog, o.max_outbound_connections, o.connection_allocation_aggressiveness) - stats.open;
  }

  /** Counts a connection being opened in its site's stats until they are summed again. */
  opened(queue: ReadyQueue): void {
    const key = this.siteKeys.get(queue.record);
    const stats = key === undefined ? undefined : this.sites.get(key)?.stats.get(queue.binding.name);
    if (stats) stats.open++;
  }

  starve(queue: ReadyQueue): void {
    this.starving.add(queue);
  }

  fed(queue: ReadyQueue): void {
    this.starving.delete(queue);
  }

  /**
   * Lends the connection to a sibling queue that has none, when its own queue has another
   * connection or has had its turn (LEND_QUANTUM), so no domain of a site waits for a connection of
   * its own while the site's connections are busy elsewhere.
   */
  lend(conn: Dispatcher): void {
    if (this.starving.size === 0 || (conn.queue.open <= 1 && conn.takenHere < LEND_QUANTUM)) return;
    const now = this.deps.clock.now();
    let scanned = 0;
    for (const q of this.starving) {
      if (scanned++ >= STARVING_SCAN) return;
      if (q.open > 0 || q.entries.length === 0) {
        this.starving.delete(q);
        continue;
      }
      if (!this.canServe(conn, q, now) || this.needsLease(conn, q)) continue;
      this.starving.delete(q);
      this.move(conn, q);
      return;
    }
  }

  /**
   * Moves an emptied connection to a sibling queue with mail and room; false when there is none.
   * A move to a pair that counts its connections across the cluster waits for its lease, unless
   * the connection holds it from an earlier visit.
   */
  migrate(conn: Dispatcher): boolean | Promise<boolean> {
    if (!this.enabled) return false;
    const now = this.deps.clock.now();
    for (const q of this.withMail) {
      if (q.entries.length === 0) {
        this.withMail.delete(q);
        continue;
      }
      if (q === conn.queue || !this.canServe(conn, q, now)) continue;
      if (this.needsLease(conn, q)) return this.moveLeased(conn, q);
      this.move(conn, q);
      return true;
    }
    return false;
  }

  /**
   * The destination pair's lease first, added to those the connection holds (gate.ts says why it
   * keeps them). Refused (the pair has its limit's worth across the cluster), it stays. A session
   * that ended meanwhile gives the new lease back.
   */
  private async moveLeased(conn: Dispatcher, dest: ReadyQueue): Promise<boolean> {
    const lease = await this.deps.movePair(dest.binding.name, dest.domain);
    if (!lease) return false;
    if (conn.handle.phase === 'closed' || conn.handle.client?.closed !== false) {
      lease.drop();
      return false;
    }
    conn.handle.permit = lease.adopt(conn.handle.permit);
    this.move(conn, dest);
    return true;
  }

  /** A move to a pair that counts its connections across the cluster (cluster_max_outbound_connections), whose lease the connection lacks. */
  private needsLease(conn: Dispatcher, queue: ReadyQueue): boolean {
    return !this.deps.covers(conn.handle.permit, queue.binding.name, queue.domain);
  }

  /** Idle connections of the queue's binding that can carry its mail come over, up to `room`; how many came. */
  takeOver(queue: ReadyQueue, room: number, connections: Iterable<Dispatcher>): number {
    if (!this.enabled) return 0;
    let moved = 0;
    for (const c of connections) {
      if (moved >= room) break;
      if (!c.isIdle || c.queue === queue || c.queue.binding.name !== queue.binding.name || this.needsLease(c, queue) || !this.canCarry(c, queue)) continue;
      this.move(c, queue);
      c.nudge();
      moved++;
    }
    return moved;
  }

  /**
   * A connection may serve a sibling only if it reaches one of its MXs the way the sibling's own
   * options ask. An idle or lent connection moves only to a pair whose cluster lease, if it has
   * the limit, it holds; an emptied one takes the lease first (migrate).
   */
  canCarry(conn: Dispatcher, queue: ReadyQueue): boolean {
    const target = conn.handle.target;
    // First the cheap test most connections fail: takeOver asks it of every idle connection.
    if (!queue.record.reaches(target)) return false;
    const o = this.deps.options.of(queue.binding.name, queue.domain);
    const { targets, requirement } = this.requirementOf(conn, queue, o);
    return target.port === o.remote_smtp_port
      && tlsCarries(conn.handle.client!, target.host, o, targets.map((t) => t.host), requirement);
  }

  /** What the sibling's policy asks of its own MX behind this connection: that MX found by name, else by address. */
  private requirementOf(conn: Dispatcher, queue: ReadyQueue, o = this.deps.options.of(queue.binding.name, queue.domain)): { targets: readonly Target[]; own: Target | undefined; requirement: TlsRequirement } {
    const target = conn.handle.target;
    const mx = queue.record.mx;
    const targets = queue.record.targets();
    const own = targets.find((t) => t.host === target.host) ?? targets.find((t) => t.address === target.address);
    const requirement = mx.phase === 'resolved' && own
      ? requirementFor(queue.domain, own.host, own.port, mx.tls, o) : { kind: 'options' as const };
    return { targets, own, requirement };
  }

  /**
   * MTA-STS testing mode counts every session under the policy and logs what enforce would have
   * refused: a sibling riding a session is judged as its own session would be, once per session.
   */
  private noteSiblingPolicy(conn: Dispatcher, dest: ReadyQueue): void {
    if (!conn.firstVisit(dest.domain)) return;
    const { own, requirement } = this.requirementOf(conn, dest);
    if (requirement.kind !== 'sts-testing' || !own) return;
    const check = conn.handle.client?.judge(requirement, own.host);
    if (check) this.deps.policyChecked(conn, check, own.host);
  }

  /** The queue is forgotten. */
  forgetQueue(queue: ReadyQueue): void {
    this.starving.delete(queue);
    this.withMail.delete(queue);
  }

  /** The domain is forgotten. */
  leave(record: DomainRecord): void {
    const key = this.siteKeys.get(record);
    if (key === undefined) return;
    this.siteKeys.delete(record);
    const site = this.sites.get(key);
    site?.members.delete(record);
    if (site?.members.size === 0) this.sites.delete(key);
  }

  private canServe(conn: Dispatcher, queue: ReadyQueue, now: number): boolean {
    return queue.binding.name === conn.queue.binding.name && !heldBy(queue, this.deps.holds, now)
      && this.canCarry(conn, queue) && this.deps.room(queue) > 0;
  }

  private move(conn: Dispatcher, dest: ReadyQueue): void {
    const src = conn.queue;
    this.deps.hooks.fire('premigrate_outbound_connection', conn.handle, src.record, dest.record);
    this.deps.observer.migrated();
    this.deps.log.debug({
      event: 'connection_migrated', connection: conn.handle.id, binding: src.binding.name, from: src.domain, to: dest.domain, mx_host: conn.handle.target.host,
    }, 'connection moved to a sibling domain');
    src.connections.delete(conn);
    dest.connections.add(conn);
    conn.join(dest);
    this.noteSiblingPolicy(conn, dest);
    dest.to({ phase: 'served' }, this.deps.clock.now());
    this.deps.moved(src, dest);
  }

  /** The domain's site, refiled when its first MX host changed. */
  private file(record: DomainRecord): string | undefined {
    const key = record.targets()[0]?.host;
    if (this.siteKeys.get(record) !== key) {
      this.leave(record);
      if (key !== undefined) {
        let site = this.sites.get(key);
        if (!site) this.sites.set(key, site = { members: new Set(), stats: new Map() });
        site.members.add(record);
        this.siteKeys.set(record, key);
      }
    }
    return key;
  }

  private statsOf(key: string, binding: string, now: number): SiteStats {
    const site = this.sites.get(key)!;
    let stats = site.stats.get(binding);
    if (stats && site.members.size > SUM_ALWAYS && now - stats.at < STATS_MS) return stats;
    stats = { at: now, open: 0, backlog: 0 };
    for (const record of site.members) {
      const q = this.deps.queueOf(record, binding);
      if (!q) continue;
      stats.open += q.open;
      stats.backlog += q.backlog;
    }
    site.stats.set(binding, stats);
    return stats;
  }
}

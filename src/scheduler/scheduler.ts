// Momentum's mail queue maintainer: held jobs wait in per binding × domain active queues; each
// queue gets connections toward a goal that grows with it, under every cap; connection failures
// turn into Momentum's actions (requeue one, purge the domain, delay the domain). Mail that
// cannot be held now (queue full, domain delayed or suspended) is parked back in Redis without
// an attempt charged, so no domain's backlog blocks another's.
import type { Logger } from 'pino';
import type { Bindings } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import { type Reply, isSuccess, reply } from '../core/reply.js';
import type { ScopedValues } from '../config/scopes.js';
import type { DomainRecords } from '../delivery/domain-record.js';
import {
  CONN_ACTION_PURGE_DOMAIN, CONN_ACTION_REQUEUE1, CONN_ERROR_HOST_MAX_REACHED, CONN_ERROR_MX_LOOKUP_PENDING,
  flagNames,
} from '../delivery/flags.js';
import type { HostConnections } from '../delivery/host-connections.js';
import type { ConnectionError, ConnectionHandle, Initiator } from '../delivery/initiator.js';
import { type RetryPolicy, retryDelay } from '../delivery/retry.js';
import { tlsCarries } from '../delivery/tls-policy.js';
import type { HookRegistry } from '../hooks/registry.js';
import { type ConnectionOwner, OutboundConnection } from './connection.js';
import { DomainState, type Pair } from './domain-state.js';
import type { Action, DeliveryResult, Entry } from './entry.js';
import { connectionGoal, refillCount, roomForConnections } from './policy.js';
import { type SchedulerState, domainView } from './state.js';
import { Throttles } from './throttle.js';

type ThrottleKey = 'outbound_throttle_messages' | 'outbound_throttle_connections' | 'scope_max_outbound_connections';

export interface SchedulerDeps {
  initiator: Initiator;
  records: DomainRecords;
  hosts: HostConnections;
  bindings: Bindings;
  hooks: HookRegistry;
  clock: Clock;
  log: Logger;
  options(binding: string, domain: string): ScopedValues;
  /** The scope an option comes from: shared budgets are keyed by it. */
  scopeOf(binding: string, domain: string, key: ThrottleKey): string;
  retryPolicy(binding: string, domain: string): RetryPolicy;
  bodyOf(qid: string): Promise<Buffer | undefined>;
  /** Makes up to `count` of a pair's oldest parked jobs due now; how many moved and how many stay parked. */
  promoteParked(pair: { binding: string; domain: string }, count: number): Promise<{ promoted: number; remaining: number }>;
  serverMaxConnections: number;
  /** The window: jobs the consumer holds at most (max_active_messages). */
  maxHeld: number;
  migrate: boolean;
  suspendedRecheck: number;
  observer: SchedulerObserver;
}

/** Settings a reload may change while connections stay open. */
export type SchedulerSettings = Pick<SchedulerDeps, 'serverMaxConnections' | 'migrate' | 'suspendedRecheck'>;

/** What the scheduler reports for metrics. */
export interface SchedulerObserver {
  /** A connection attempt failed; flags are CONN_ERROR_* / CONN_ACTION_* names. */
  connectionFailed(binding: string, flags: readonly string[]): void;
  migrated(): void;
}

/** Domains idle this long with nothing queued are forgotten (their MX state is refetched). */
const SWEEP_INTERVAL_MS = 60_000;
/**
 * Share of the window kept for queues that hold little: past it, a queue holding
 * RESERVED_QUEUE_FLOOR or more parks new mail, so a few full queues never starve the rest.
 */
const WINDOW_RESERVE = 0.1;
const RESERVED_QUEUE_FLOOR = 10;
/** Longest a queue without connections waits for a sibling's connection before opening its own. */
const SIBLING_WAIT_MS = 1_000;
/**
 * A large pool's connection and backlog counts are summed at most this often (openings in between
 * are added); a pool of up to POOL_SUM_ALWAYS domains is summed every time, so a domain alone on
 * its MX host sees its own goal exactly.
 */
const POOL_STATS_MS = 100;
const POOL_SUM_ALWAYS = 16;
/** Queues a connection looks through for a starving sibling after each message. */
const STARVING_SCAN = 32;
/**
 * Messages a connection carries for one queue before it is lent to a sibling queue that has no
 * connection, even if that leaves its own queue without one: the pool's connections take turns.
 */
const LEND_QUANTUM = 10;

/** A sibling pool's connections and backlog for one binding, as last summed. */
interface PoolStats {
  at: number;
  open: number;
  backlog: number;
}
/**
 * How long a job parked for a full queue waits if its promotion never comes (its id was lost
 * to a crash between two writes). Promotion, not this, is what brings parked mail back.
 */
export const PARK_FALLBACK_MS = 3_600_000;
/** Promoted jobs not seen after this are no longer expected (another daemon took them, or they were failed). */
const INCOMING_STALE_MS = 30_000;

export class Scheduler implements ConnectionOwner {
  private readonly domains = new Map<string, DomainState>();
  private readonly throttles = new Throttles();
  /** Pairs that want more connections than a shared cap (scope, server) allows now. */
  private readonly blocked = new Set<Pair>();
  /** Pairs that have (or had) ready mail: where an emptied connection looks for a sibling. */
  private readonly readyPairs = new Set<Pair>();
  private readonly connections = new Set<OutboundConnection>();
  /** Bodies read ahead for entries still in a ready queue (see prefetch); weak, as entries may leave unsent. */
  private readonly bodies = new WeakMap<Entry, Promise<Buffer | undefined>>();
  private connecting = 0;
  /** Jobs admitted into an active queue and not yet settled. */
  private held = 0;
  /** Promoted jobs expected back, over all pairs. */
  private incoming = 0;
  /** Pairs with parked mail that found the window full: promoted as it frees. */
  private readonly waitingForWindow = new Set<Pair>();
  private refillQueued = false;
  /** Sibling pools by first MX host: their domains, and their counts per binding. */
  private readonly pools = new Map<string, { members: Set<DomainState>; stats: Map<string, PoolStats> }>();
  /** Queues with mail and no connection, waiting for a sibling's connection to come over. */
  private readonly starving = new Set<Pair>();
  private closing = false;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly deps: SchedulerDeps) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  /** Takes a job into its active queue, or parks it; `entry.settle` reports which, once. */
  admit(entry: Entry): void {
    const now = this.deps.clock.now();
    const ds = this.domain(entry.domain);
    const pair = ds.pair(entry.binding);
    if (entry.returning) ds.delayed = Math.max(0, ds.delayed - 1);
    if (entry.returning === 'parked') this.arrived(pair);
    ds.apply({ kind: 'tick', now });
    if (this.closing) return this.park(pair, entry, now, 'stopping');
    if (ds.suspended || this.deps.bindings.isSuspended(entry.binding.name)) {
      return this.parkTracked(pair, entry, now + this.deps.suspendedRecheck, 'suspended');
    }
    if (ds.phase.phase === 'delayed') return this.park(pair, entry, ds.phase.until, 'domain delayed');
    const windowTight = this.held >= this.windowLimit && pair.ready.length >= RESERVED_QUEUE_FLOOR;
    if (pair.ready.length >= this.options(pair).max_ready || windowTight) {
      return this.parkTracked(pair, entry, now + PARK_FALLBACK_MS, 'active queue full');
    }
    this.held++;
    pair.ready.push({
      ...entry,
      settle: (outcome) => {
        this.held--;
        this.windowFreed();
        entry.settle(outcome);
      },
    });
    this.readyPairs.add(pair);
    this.prefetch(pair);
    this.maintain(pair);
  }

  /**
   * Pairs with parked mail this daemon has not seen parked (it parked them before a restart, or
   * another daemon did): each promotes what it has room for, and then keeps refilling.
   */
  adoptParked(pairs: ReadonlyArray<{ binding: string; domain: string }>): void {
    for (const { binding, domain } of pairs) {
      const b = this.deps.bindings.get(binding);
      if (!b) {
        this.deps.log.warn({ event: 'parked_binding_unknown', binding, domain },
          'mail parked for a binding no longer configured comes back at its fallback time');
        continue;
      }
      const pair = this.domain(domain).pair(b);
      pair.parked = Math.max(pair.parked, 1);
      this.refill(pair);
    }
  }

  /** Counts a job the consumer put back in the delayed set after an attempt. */
  noteDeferred(domain: string): void {
    this.domain(domain).delayed++;
  }

  suspendDomain(domain: string): void {
    const ds = this.domain(domain);
    ds.suspended = true;
    this.parkAll([...ds.pairs.values()], this.deps.clock.now() + this.deps.suspendedRecheck, 'suspended');
  }

  resumeDomain(domain: string): void {
    const ds = this.domains.get(domain);
    if (!ds) return;
    ds.suspended = false;
    for (const p of ds.pairs.values()) {
      this.maintain(p);
      this.refill(p);
    }
  }

  suspendBinding(name: string): void {
    this.deps.bindings.suspend(name);
    this.parkAll(this.pairsOf(name), this.deps.clock.now() + this.deps.suspendedRecheck, 'suspended');
  }

  resumeBinding(name: string): void {
    this.deps.bindings.resume(name);
    for (const p of this.pairsOf(name)) {
      this.maintain(p);
      this.refill(p);
    }
  }

  /** An operator's flush: the domain's delay and connection pacing end, so its mail goes now. */
  flush(domain?: string): void {
    const picked = domain === undefined ? [...this.domains.values()] : [this.domains.get(domain)].filter((d) => d !== undefined);
    for (const ds of picked) {
      ds.apply({ kind: 'flush' });
      clearTimeout(ds.phaseTimer);
      for (const p of ds.pairs.values()) {
        p.retryAt = 0;
        this.maintain(p);
        this.refill(p);
      }
    }
  }

  /**
   * An operator's fail: held mail that `match` selects fails with `why` (quietly: no bounce).
   * Mail on a connection finishes the transaction it is in. Returns how many were failed.
   */
  failHeld(match: (e: Entry) => boolean, why: Reply, quiet: boolean): number {
    let failed = 0;
    for (const ds of this.domains.values()) {
      for (const p of ds.pairs.values()) {
        const keep: Entry[] = [];
        for (const e of p.ready) {
          if (!match(e)) {
            keep.push(e);
            continue;
          }
          failed++;
          e.settle({ kind: 'attempted', result: { replies: e.recipients.map((recipient) => ({ recipient, reply: why })) }, action: 'admin_fail', quiet });
        }
        p.ready = keep;
      }
    }
    return failed;
  }

  /** A reload: new caps apply to every queue at once. */
  reconfigure(settings: SchedulerSettings): void {
    Object.assign(this.deps, settings);
    for (const p of this.readyPairs) this.maintain(p);
    this.capacityFreed();
  }

  /** Messages held in active queues or on a connection. */
  get heldCount(): number {
    return this.held;
  }

  /** The summary's figures, without building every domain's view. */
  totals(): { connections: number; connecting: number; held: number; activeDomains: number } {
    let activeDomains = 0;
    for (const ds of this.domains.values()) if (ds.active > 0) activeDomains++;
    return { connections: this.connections.size, connecting: this.connecting, held: this.held, activeDomains };
  }

  /** Open connections per binding. */
  connectionsByBinding(): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of this.connections) out.set(c.pair.binding.name, (out.get(c.pair.binding.name) ?? 0) + 1);
    return out;
  }

  suspendedDomains(): string[] {
    return [...this.domains.values()].filter((d) => d.suspended).map((d) => d.domain);
  }

  /** The observable state of every domain the scheduler knows, or of one. */
  state(domain?: string): SchedulerState {
    const now = this.deps.clock.now();
    const all = [...this.domains.values()];
    const picked = domain === undefined ? all : all.filter((d) => d.domain === domain);
    return {
      connections: this.connections.size,
      connecting: this.connecting,
      held: this.held,
      domains: picked.map((d) => domainView(d, all, this.deps.bindings, (p, key) => this.throttleOf(p, key)?.wait(now) ?? 0, now)),
    };
  }

  /** Stops opening connections and parks every held job for immediate pick-up after restart. */
  close(): void {
    this.closing = true;
    clearInterval(this.sweeper);
    const now = this.deps.clock.now();
    for (const ds of this.domains.values()) this.parkAll([...ds.pairs.values()], now, 'stopping');
    for (const c of this.connections) c.nudge();
  }

  // ConnectionOwner: the side of the scheduler its connections see.

  options(pair: Pair): ScopedValues {
    return this.deps.options(pair.binding.name, pair.domain);
  }

  take(conn: OutboundConnection): Entry | undefined {
    if (this.starving.size > 0 && (conn.pair.open > 1 || conn.takenHere >= LEND_QUANTUM)) this.lend(conn);
    const pair = conn.pair;
    if (!this.canDeliver(pair)) return undefined;
    const e = pair.ready.shift();
    if (e) {
      pair.inFlight++;
      conn.takenHere++;
    }
    this.refill(pair);
    this.prefetch(pair);
    return e;
  }

  /**
   * Starts reading the bodies of the messages the pair's connections take next, one per
   * connection (one for a pair waiting for its first): a body read waits for Redis's fsync of
   * whatever else is being written (4 ms seen under load), which a connection otherwise spends
   * idle before each transaction.
   */
  private prefetch(pair: Pair): void {
    const depth = Math.min(pair.ready.length, Math.max(1, pair.connections.size));
    for (let i = 0; i < depth; i++) {
      const e = pair.ready[i]!;
      if (this.bodies.has(e)) continue;
      const read = this.deps.bodyOf(e.qid);
      // Awaited by the transaction, if the entry gets one; an entry parked or failed meanwhile drops it.
      read.catch(() => {});
      this.bodies.set(e, read);
    }
  }

  migrate(conn: OutboundConnection): boolean {
    if (!this.deps.migrate || this.closing) return false;
    for (const p of this.readyPairs) {
      if (p.ready.length === 0) {
        this.readyPairs.delete(p);
        continue;
      }
      if (p === conn.pair || p.binding.name !== conn.pair.binding.name || !this.canDeliver(p)) continue;
      if (!this.canCarry(conn, p) || this.room(p) === 0) continue;
      this.move(conn, p);
      return true;
    }
    return false;
  }

  throttle(pair: Pair): number {
    const now = this.deps.clock.now();
    const t = this.throttleOf(pair, 'outbound_throttle_messages');
    const wait = t?.wait(now) ?? 0;
    if (wait === 0) t?.take(now);
    return wait;
  }

  giveBack(conn: OutboundConnection, entry: Entry, retryInMs: number): void {
    conn.pair.inFlight--;
    conn.pair.ready.unshift(entry);
    this.wakeAt(conn.pair, this.deps.clock.now() + retryInMs);
  }

  bodyOf(entry: Entry): Promise<Buffer | undefined> {
    const read = this.bodies.get(entry) ?? this.deps.bodyOf(entry.qid);
    this.bodies.delete(entry);
    return read;
  }

  complete(conn: OutboundConnection, entry: Entry, result: DeliveryResult): void {
    const now = this.deps.clock.now();
    const pair = conn.pair;
    pair.inFlight--;
    const failure = result.replies.find((r) => !isSuccess(r.reply));
    if (failure) pair.state.lastError = { reply: failure.reply, at: now };
    entry.settle({ kind: 'attempted', result });
  }

  closed(conn: OutboundConnection): void {
    this.connections.delete(conn);
    conn.pair.connections.delete(conn);
    this.capacityFreed();
    this.maintain(conn.pair);
  }

  isClosing(): boolean {
    return this.closing;
  }

  // Maintenance: connections toward each queue's goal.

  private maintain(pair: Pair): void {
    this.refill(pair);
    if (this.closing || pair.ready.length === 0 || !this.canDeliver(pair)) return;
    const now = this.deps.clock.now();
    for (const c of pair.connections) if (c.isIdle) c.nudge();
    let room = this.room(pair);
    if (room === 0) {
      if (this.goal(pair) > pair.open) this.blocked.add(pair);
      return;
    }
    if (this.deps.migrate) {
      for (const c of this.connections) {
        if (room === 0) return;
        if (!c.isIdle || c.pair === pair || c.pair.binding.name !== pair.binding.name) continue;
        if (!this.canCarry(c, pair)) continue;
        this.move(c, pair);
        c.nudge();
        room--;
      }
    }
    if (pair.retryAt > now) return this.wakeAt(pair, pair.retryAt);
    const poolRoom = this.poolRoom(pair, now);
    if (poolRoom <= 0) {
      if (pair.open > 0) return;
      // A queue with no connection at all gets one of its own if no sibling's comes over in time.
      pair.siblingWaitSince ??= now;
      if (now - pair.siblingWaitSince < SIBLING_WAIT_MS) {
        this.starving.add(pair);
        return this.wakeAt(pair, pair.siblingWaitSince + SIBLING_WAIT_MS);
      }
      room = Math.min(room, 1);
    } else {
      room = Math.min(room, poolRoom);
    }
    pair.siblingWaitSince = undefined;
    this.starving.delete(pair);
    // A connection opened while the message throttle is spent would only idle.
    const messageWait = this.throttleOf(pair, 'outbound_throttle_messages')?.wait(now) ?? 0;
    if (messageWait > 0 && pair.connections.size > 0) return this.wakeAt(pair, now + messageWait);
    const throttle = this.throttleOf(pair, 'outbound_throttle_connections');
    for (; room > 0; room--) {
      const wait = throttle?.wait(now) ?? 0;
      if (wait > 0) return this.wakeAt(pair, now + wait);
      if (!this.initiate(pair, now)) return;
      this.opened(pair);
      throttle?.take(now);
    }
  }

  private initiate(pair: Pair, now: number): boolean {
    const done = (handle: ConnectionHandle<undefined>, err?: ConnectionError) => this.connected(pair, handle, err);
    const r = this.deps.initiator.initiateConnection(pair.state.record, pair.binding, now, done, done, undefined);
    if ('error' in r) {
      this.refused(pair, r.error, r.reply, now);
      return false;
    }
    pair.connecting++;
    this.connecting++;
    return true;
  }

  /** initiate_connection said no at once. Waits are not failures: retry when the cause clears. */
  private refused(pair: Pair, flags: number, why: Reply, now: number): void {
    const dr = pair.state.record;
    if (flags & CONN_ERROR_MX_LOOKUP_PENDING && dr.mx.phase === 'resolving') {
      if (pair.waitingForLookup) return;
      pair.waitingForLookup = true;
      void dr.mx.settled.then(() => {
        pair.waitingForLookup = false;
        this.maintain(pair);
      });
      return;
    }
    if (flags & CONN_ERROR_HOST_MAX_REACHED) {
      if (pair.waitingForHost) return;
      pair.waitingForHost = true;
      void this.deps.hosts.released(this.deps.initiator.hostsOf(dr)).then(() => {
        pair.waitingForHost = false;
        this.maintain(pair);
      });
      return;
    }
    this.failed(pair, flags, why, now);
  }

  private connected(pair: Pair, handle: ConnectionHandle<undefined>, err: ConnectionError | undefined): void {
    pair.connecting--;
    this.connecting--;
    const now = this.deps.clock.now();
    if (err) {
      this.failed(pair, err.flags, err.reply, now);
      this.capacityFreed();
      return;
    }
    if (this.closing) {
      handle.close();
      return;
    }
    if (pair.state.phase.phase === 'delayed') {
      this.deps.log.info({ event: 'domain_undelayed', domain: pair.domain, binding: pair.binding.name }, 'connection succeeded; domain no longer delayed');
    }
    pair.state.apply({ kind: 'connected' });
    const conn = new OutboundConnection(pair, handle, this);
    pair.connections.add(conn);
    this.connections.add(conn);
    void conn.run();
  }

  /** A connection attempt failed: Momentum's actions, then mx_failures_to_delay. */
  private failed(pair: Pair, flags: number, why: Reply, now: number): void {
    const ds = pair.state;
    this.deps.observer.connectionFailed(pair.binding.name, flagNames(flags));
    ds.lastError = { reply: why, flags, at: now };
    if (flags & CONN_ACTION_PURGE_DOMAIN) {
      for (const p of ds.pairs.values()) this.drainQueue(p, 'purge_domain', why, flags);
    } else if (flags & CONN_ACTION_REQUEUE1) {
      const e = pair.ready.shift();
      if (e) this.charge(e, 'requeue1', why, flags);
    }
    const threshold = this.options(pair).mx_failures_to_delay;
    if (threshold > 0 && ds.record.consecutiveFailures >= threshold && ds.phase.phase !== 'delayed') {
      this.delayDomain(ds, now);
      return;
    }
    // A purge already settled everything, and the lookup's own expiry paces the next one. Any
    // other failure paces the pair, or each arriving message would be charged at once.
    if (flags & CONN_ACTION_PURGE_DOMAIN) return;
    pair.retryAt = now + Math.max(1000, this.options(pair).host_failure_retry);
    if (pair.ready.length > 0) this.wakeAt(pair, pair.retryAt);
  }

  /** mx_failures_to_delay reached: every held message of the domain is deferred, no new connections until the earliest next attempt. */
  private delayDomain(ds: DomainState, now: number): void {
    const failures = ds.record.consecutiveFailures;
    const why = reply(451, '4.4.1', `[internal] ${failures} consecutive connection failures to the MXs of ${ds.domain}; domain delayed`);
    const held = [...ds.pairs.values()].flatMap((p) => p.ready.map((e) => ({ e, p })));
    const firstBinding = held[0]?.p.binding.name ?? [...ds.pairs.keys()][0] ?? 'default';
    const until = held.length > 0
      ? Math.min(...held.map(({ e, p }) => now + retryDelay(e.attempts + 1, this.deps.retryPolicy(p.binding.name, ds.domain))))
      : now + retryDelay(1, this.deps.retryPolicy(firstBinding, ds.domain));
    ds.apply({ kind: 'delay', until, reason: why });
    this.deps.log.warn({
      event: 'domain_delayed', domain: ds.domain, consecutive_failures: failures, messages: held.length,
      until: new Date(until).toISOString(), last_error: ds.lastError ? `${ds.lastError.reply.code} ${ds.lastError.reply.text}` : undefined,
    }, 'domain delayed after consecutive connection failures');
    for (const p of ds.pairs.values()) this.drainQueue(p, 'delay_domain', why, ds.lastError?.flags);
    clearTimeout(ds.phaseTimer);
    ds.phaseTimer = setTimeout(() => {
      ds.apply({ kind: 'tick', now: this.deps.clock.now() });
      for (const p of ds.pairs.values()) this.maintain(p);
    }, until - now).unref();
  }

  private drainQueue(pair: Pair, action: Action, why: Reply, flags: number | undefined): void {
    for (let e = pair.ready.shift(); e; e = pair.ready.shift()) this.charge(e, action, why, flags);
  }

  /** Settles a held message with a transient (or permanent) failure it did not reach a server for. */
  private charge(e: Entry, action: Action, why: Reply, flags: number | undefined): void {
    e.settle({ kind: 'attempted', result: { replies: e.recipients.map((recipient) => ({ recipient, reply: why })), flags }, action });
  }

  private park(pair: Pair, e: Entry, until: number, reason: string): void {
    pair.state.delayed++;
    e.settle({ kind: 'parked', until, reason });
  }

  /** A park the pair promotes itself when it has room; `until` is the fallback. */
  private parkTracked(pair: Pair, e: Entry, until: number, reason: string): void {
    pair.state.delayed++;
    e.settle({
      kind: 'parked', until, reason,
      filed: () => {
        pair.parked++;
        if (pair.promoting) pair.filedDuringPromotion++;
        this.refill(pair);
      },
    });
  }

  // Refill: parked mail promoted as its queue drains.

  /** Jobs held at most before queues holding RESERVED_QUEUE_FLOOR or more park new mail. */
  private get windowLimit(): number {
    return Math.floor(this.deps.maxHeld * (1 - WINDOW_RESERVE));
  }

  /**
   * A parked job came back. One not promoted here (it came on its fallback, or another daemon
   * promoted it) says the pair may have parked mail this daemon does not know of.
   */
  private arrived(pair: Pair): void {
    if (pair.incoming > 0) {
      pair.incoming--;
      this.incoming--;
    } else {
      pair.parked = Math.max(pair.parked, 1);
    }
  }

  /**
   * Promotes the pair's parked mail once its active queue is half empty, up to max_ready and
   * what the window has left: the queue never runs dry while mail for it waits in Redis, and
   * mail comes back only when it will be held, so a backlog is read once.
   */
  private refill(pair: Pair): void {
    if (pair.parked === 0) {
      this.waitingForWindow.delete(pair);
      return;
    }
    if (pair.promoting || this.closing || !this.canDeliver(pair)) return;
    const now = this.deps.clock.now();
    if (pair.incoming > 0 && now - pair.promotedAt > INCOMING_STALE_MS) {
      this.incoming -= pair.incoming;
      pair.incoming = 0;
    }
    const windowRoom = this.windowLimit - this.held - this.incoming;
    const count = refillCount({ ready: pair.ready.length, incoming: pair.incoming, maxReady: this.options(pair).max_ready, windowRoom });
    if (count === 0) {
      if (windowRoom <= 0) this.waitingForWindow.add(pair);
      return;
    }
    this.waitingForWindow.delete(pair);
    pair.promoting = true;
    pair.filedDuringPromotion = 0;
    pair.promotedAt = now;
    pair.incoming += count;
    this.incoming += count;
    const unexpect = (n: number) => {
      const k = Math.min(n, pair.incoming);
      pair.incoming -= k;
      this.incoming -= k;
    };
    this.deps.promoteParked({ binding: pair.binding.name, domain: pair.domain }, count).then(({ promoted, remaining }) => {
      // Over-counting costs one more promotion that finds nothing; under-counting would strand mail.
      pair.parked = remaining + pair.filedDuringPromotion;
      unexpect(count - promoted);
      pair.promoting = false;
      this.refill(pair);
    }, (err: Error) => {
      // Not retried at once: the next message taken or admitted for the pair tries again.
      unexpect(count);
      pair.promoting = false;
      this.deps.log.warn({ event: 'promote_failed', domain: pair.domain, binding: pair.binding.name, err: err.message },
        'parked mail not promoted now; tried again as the queue drains, or it comes back at its fallback time');
    });
  }

  /** A held job settled: pairs that wanted window room get it, once per turn of the event loop. */
  private windowFreed(): void {
    if (this.waitingForWindow.size === 0 || this.refillQueued) return;
    this.refillQueued = true;
    setImmediate(() => {
      this.refillQueued = false;
      for (const p of [...this.waitingForWindow]) {
        if (this.held + this.incoming >= this.windowLimit) return;
        this.refill(p);
      }
    });
  }

  private parkAll(pairs: Pair[], until: number, reason: string): void {
    for (const p of pairs) for (let e = p.ready.shift(); e; e = p.ready.shift()) this.park(p, e, until, reason);
  }

  private move(conn: OutboundConnection, dest: Pair): void {
    const src = conn.pair;
    this.deps.hooks.fire('premigrate_outbound_connection', conn.handle, src.state.record, dest.state.record);
    this.deps.observer.migrated();
    this.deps.log.debug({
      event: 'connection_migrated', connection: conn.handle.id, binding: src.binding.name, from: src.domain, to: dest.domain, mx_host: conn.handle.target.host,
    }, 'connection moved to a sibling domain');
    src.connections.delete(conn);
    dest.connections.add(conn);
    conn.pair = dest;
    conn.takenHere = 0;
    dest.siblingWaitSince = undefined;
    conn.handle.domain = dest.state.record;
    this.prefetch(dest);
    // No RSET: a session whose last transaction ended (250, or refused at DATA) holds no envelope,
    // whatever domain it served; one refused part-way is reset by its connection before the next.
    this.maintain(src);
  }

  /**
   * Sibling domains on one MX host are one pool (for each binding): the pool's connections follow
   * the pool's backlog on the domain's own connection_allocation_aggressiveness curve, up to its
   * max_outbound_connections, as if the pool were one domain (as a site is, in KumoMTA). So the
   * thousand small domains of one provider share a few busy connections that move between them,
   * instead of each opening its own. Returns how many more the pool may open now (unbounded
   * without migration).
   */
  private poolRoom(pair: Pair, now: number): number {
    const pool = this.migrationPool(pair.state);
    if (!pool) return Number.POSITIVE_INFINITY;
    const stats = this.statsOf(pool, pair.binding.name, now);
    const o = this.options(pair);
    return connectionGoal(stats.backlog, o.max_outbound_connections, o.connection_allocation_aggressiveness) - stats.open;
  }

  /** The domain's sibling pool, refiled when its first MX host changed; none without migration. */
  private migrationPool(ds: DomainState): string | undefined {
    if (!this.deps.migrate) return undefined;
    const key = ds.targets()[0]?.host;
    if (ds.pool !== key) {
      this.leavePool(ds);
      if (key !== undefined) {
        let pool = this.pools.get(key);
        if (!pool) this.pools.set(key, pool = { members: new Set(), stats: new Map() });
        pool.members.add(ds);
      }
      ds.pool = key;
    }
    return key;
  }

  private leavePool(ds: DomainState): void {
    if (ds.pool === undefined) return;
    const pool = this.pools.get(ds.pool);
    pool?.members.delete(ds);
    if (pool?.members.size === 0) this.pools.delete(ds.pool);
    ds.pool = undefined;
  }

  private statsOf(key: string, binding: string, now: number): PoolStats {
    const pool = this.pools.get(key)!;
    let stats = pool.stats.get(binding);
    if (stats && pool.members.size > POOL_SUM_ALWAYS && now - stats.at < POOL_STATS_MS) return stats;
    stats = { at: now, open: 0, backlog: 0 };
    for (const ds of pool.members) {
      const p = ds.pairs.get(binding);
      if (!p) continue;
      stats.open += p.open;
      stats.backlog += p.ready.length + p.inFlight;
    }
    pool.stats.set(binding, stats);
    return stats;
  }

  /** Counts a connection being opened in its pool's stats until they are summed again. */
  private opened(pair: Pair): void {
    const stats = pair.state.pool === undefined ? undefined : this.pools.get(pair.state.pool)?.stats.get(pair.binding.name);
    if (stats) stats.open++;
  }

  /**
   * Lends a connection to a sibling queue that has none, when its own queue has other connections
   * or has had its turn (LEND_QUANTUM), so no domain of a pool waits for a connection of its own
   * while the pool's connections are busy elsewhere.
   */
  private lend(conn: OutboundConnection): void {
    let scanned = 0;
    for (const p of this.starving) {
      if (scanned++ >= STARVING_SCAN) return;
      if (p.open > 0 || p.ready.length === 0) {
        this.starving.delete(p);
        continue;
      }
      if (p.binding.name !== conn.pair.binding.name || !this.canDeliver(p) || !this.canCarry(conn, p) || this.room(p) === 0) continue;
      this.starving.delete(p);
      this.move(conn, p);
      return;
    }
  }

  /** A connection may serve a sibling only if it reaches one of its MXs the way its own options ask. */
  private canCarry(conn: OutboundConnection, pair: Pair): boolean {
    const o = this.options(pair);
    const target = conn.handle.target;
    return pair.state.reaches(target) && target.port === o.remote_smtp_port
      && tlsCarries(conn.handle.client!, target.host, o, pair.state.targets().map((t) => t.host));
  }

  private canDeliver(pair: Pair): boolean {
    pair.state.apply({ kind: 'tick', now: this.deps.clock.now() });
    return !pair.state.suspended && pair.state.phase.phase !== 'delayed' && !this.deps.bindings.isSuspended(pair.binding.name);
  }

  private goal(pair: Pair): number {
    const o = this.options(pair);
    return connectionGoal(pair.ready.length + pair.inFlight, o.max_outbound_connections, o.connection_allocation_aggressiveness);
  }

  /** New connections (or migrated ones) the pair may take now. */
  private room(pair: Pair): number {
    const o = this.options(pair);
    const scope = this.deps.scopeOf(pair.binding.name, pair.domain, 'scope_max_outbound_connections');
    let scopeOpen = 0;
    for (const p of pair.state.pairs.values()) {
      if (p === pair || this.deps.scopeOf(p.binding.name, p.domain, 'scope_max_outbound_connections') === scope) scopeOpen += p.open;
    }
    return roomForConnections({
      goal: this.goal(pair), pair: pair.open, scope: scopeOpen, scopeMax: o.scope_max_outbound_connections,
      server: this.connections.size + this.connecting, serverMax: this.deps.serverMaxConnections,
    });
  }

  private throttleOf(pair: Pair, key: 'outbound_throttle_messages' | 'outbound_throttle_connections') {
    const rate = this.options(pair)[key];
    return rate ? this.throttles.get(this.deps.scopeOf(pair.binding.name, pair.domain, key), rate) : undefined;
  }

  private capacityFreed(): void {
    const waiting = [...this.blocked];
    this.blocked.clear();
    for (const p of waiting) this.maintain(p);
  }

  private wakeAt(pair: Pair, at: number): void {
    if (pair.timer) clearTimeout(pair.timer);
    pair.timer = setTimeout(() => {
      pair.timer = undefined;
      this.maintain(pair);
    }, Math.max(0, at - this.deps.clock.now())).unref();
  }

  private domain(name: string): DomainState {
    let ds = this.domains.get(name);
    if (!ds) {
      ds = new DomainState(this.deps.records.get(name));
      this.domains.set(name, ds);
    }
    return ds;
  }

  private pairsOf(binding: string): Pair[] {
    return [...this.domains.values()].flatMap((d) => [...d.pairs.values()]).filter((p) => p.binding.name === binding);
  }

  /** Forgets domains with nothing held, open, parked or delayed, so memory follows the live set. */
  private sweep(): void {
    const now = this.deps.clock.now();
    for (const [name, ds] of this.domains) {
      ds.apply({ kind: 'tick', now });
      for (const [b, p] of ds.pairs) {
        if (!p.empty || p.parked > 0 || p.timer) continue;
        ds.pairs.delete(b);
        this.starving.delete(p);
        this.waitingForWindow.delete(p);
      }
      if (ds.pairs.size > 0 || ds.suspended || ds.delayed > 0 || ds.phase.phase !== 'normal' || ds.record.mx.phase === 'resolving') continue;
      this.leavePool(ds);
      this.domains.delete(name);
      this.deps.records.delete(name);
    }
  }
}

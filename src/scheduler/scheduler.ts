// The scheduler's face: a ready queue per destination domain and binding, fed by admit() and
// emptied by connections, with parked mail (backlog.ts), sites (site.ts), the maintainer
// (maintainer.ts) and the operator's commands. Every event marks queues for one pump, which runs
// the maintainer once per queue per turn of the event loop.
import type { Logger } from 'pino';
import type { Bindings } from '../binding/registry.js';
import type { Clock, Timer } from '../core/clock.js';
import { type Reply, isSuccess } from '../core/reply.js';
import type { DeliveryOptions } from '../config/delivery-options.js';
import type { ScopedValues } from '../config/scopes.js';
import type { ClusterGate } from '../cluster/gate.js';
import type { Initiator } from '../delivery/initiator.js';
import { type Attempt, chargedAttempt } from '../outcome/attempt.js';
import { Backlog, type ParkedIndex } from './backlog.js';
import type { Dispatcher, DispatcherOwner } from './dispatcher.js';
import type { Entry, ParkReason } from './entry.js';
import { Maintainer, type SchedulerObserver } from './maintainer.js';
import { admission } from './policy.js';
import { Pump } from './pump.js';
import { ReadyQueues } from './queues.js';
import { type Holds, ReadyQueue, heldBy } from './ready-queue.js';
import { Sites } from './site.js';
import { type SchedulerView, domainView, queueView } from './views.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { ShapingAction } from '../shaping/action.js';
import { type ObservedReply, targetCovers } from '../shaping/rule.js';
import type { ShapingChange, Shaper } from '../shaping/shaper.js';
import { bounceReply, observeAttempt, shapedQueue } from './shaping.js';

interface SchedulerDeps {
  initiator: Initiator;
  parked: ParkedIndex;
  options: DeliveryOptions;
  bindings: Bindings;
  hooks: HookRegistry;
  clock: Clock;
  log: Logger;
  observer: SchedulerObserver;
  /** Shaping actions hold queues. */
  shaping: Pick<Shaper, 'onChange' | 'holding' | 'inForce'>;
  /** Hears the replies servers gave in every attempt (shaping rules, adaptive limits). */
  replies: { observe(o: ObservedReply): void };
  /** The window: jobs held at most (max_active_messages), fixed until restart. */
  maxHeld: number;
  /** The cluster's message throttle, asked after this node's allows a message; absent on a node alone. */
  gate?: Pick<ClusterGate, 'message' | 'covers' | 'movePair'> | undefined;
  /** Told of each domain this node delays (mx_failures_to_delay), so the other nodes of a cluster hold it too. */
  delays: { delayed(domain: string, until: number, reply: Reply, failures: number): void };
}

/** Domains idle this long with nothing queued are forgotten (their MX state is looked up again). */
const SWEEP_INTERVAL_MS = 60_000;

export class Scheduler implements DispatcherOwner {
  private readonly queues = new ReadyQueues();
  private readonly records = this.queues.records;
  private readonly pump: Pump<ReadyQueue>;
  private readonly backlog: Backlog;
  private readonly sites: Sites;
  private readonly maintainer: Maintainer;
  private stopping = false;
  private sweeper: Timer;
  private readonly holds: Holds;

  constructor(private readonly deps: SchedulerDeps) {
    const { clock, log, bindings, options, hooks, observer } = deps;
    const holds = this.holds = { isSuspended: (b) => bindings.isSuspended(b), shapingSuspends: (q) => this.shapingHold(q, 'suspend') !== undefined };
    deps.shaping.onChange((action, change) => this.shaped(action, change));
    this.pump = new Pump(clock, (dirty) => {
      this.backlog.refillWaiting();
      for (const q of dirty) this.maintainer.maintain(q);
    });
    this.backlog = new Backlog({
      index: deps.parked, holds, clock, log, maxHeld: deps.maxHeld,
      maxReady: (q) => this.options(q).max_ready, stopping: () => this.stopping, windowFreed: () => this.pump.kick(),
    });
    this.sites = new Sites({
      clock, log, hooks, holds, options, observer,
      room: (q) => this.maintainer.room(q),
      queueOf: (record, binding) => this.queues.find(record.domain, binding),
      moved: (src, dest) => {
        this.prefetch(dest);
        this.pump.mark(src);
      },
      policyChecked: (conn, check, mxHost) => deps.initiator.notePolicy(conn.handle, check, mxHost),
      covers: (permit, binding, domain) => deps.gate?.covers(permit, binding, domain) ?? this.deps.options.of(binding, domain).cluster_max_outbound_connections === undefined,
      movePair: async (binding, domain) => deps.gate?.movePair(binding, domain),
    });
    this.maintainer = new Maintainer({
      initiator: deps.initiator, options, holds, clock, log, observer, backlog: this.backlog, sites: this.sites, owner: this,
      mark: (q) => this.pump.mark(q), queuesOf: (domain) => this.queues.ofDomain(domain), stopping: () => this.stopping,
      delayed: (domain, until, why, failures) => deps.delays.delayed(domain, until, why, failures),
    });
    this.sweeper = this.sweepLater();
  }

  /** Takes a job into its ready queue, or parks it; `entry.resolve` reports which, once. */
  admit(entry: Entry): void {
    const now = this.deps.clock.now();
    const q = this.queues.of(entry.domain, entry.binding);
    this.backlog.arrived(q, entry);
    const bounce = this.stopping ? undefined : this.shapingHold(q, 'bounce');
    if (bounce) return void this.backlog.hold(q, entry).resolve({ kind: 'attempted', attempt: chargedAttempt(entry.recipients, bounceReply(bounce), 'shaping_bounce') });
    const decision = admission({
      now, stopping: this.stopping,
      suspended: q.record.suspended || this.deps.bindings.isSuspended(q.binding.name),
      shapedUntil: this.shapingHold(q, 'suspend')?.until,
      delayedUntil: q.record.isDelayed(now) && q.record.delay.phase === 'delayed' ? q.record.delay.until : undefined,
      ready: q.entries.length, maxReady: this.options(q).max_ready,
      held: this.backlog.heldCount, windowLimit: this.backlog.windowLimit,
      suspendedRecheck: this.deps.options.global.suspended_recheck_interval,
    });
    if (decision.kind === 'park') return this.backlog.park(q, entry, decision.until, decision.reason, decision.filed);
    q.entries.push(this.backlog.hold(q, entry));
    this.sites.noteMail(q);
    this.prefetch(q);
    this.pump.mark(q);
  }

  /**
   * Queues with parked mail in Redis, whoever parked it (this daemon before a restart, or another
   * daemon): each promotes what it has room for, and then keeps refilling.
   */
  async adoptParked(): Promise<void> {
    for (const { binding, domain } of await this.deps.parked.queues()) {
      const b = this.deps.bindings.get(binding);
      if (!b) {
        this.deps.log.warn({ event: 'parked_binding_unknown', binding, domain },
          'mail parked for a binding no longer configured comes back at its fallback time');
        continue;
      }
      this.backlog.adopt(this.queues.of(domain, b));
    }
  }

  suspendDomain(domain: string): void {
    this.records.get(domain).suspended = true;
    this.parkAll(this.queues.ofDomain(domain), 'suspended');
  }

  resumeDomain(domain: string): void {
    const record = this.records.find(domain);
    if (!record) return;
    record.suspended = false;
    for (const q of this.queues.ofDomain(domain)) this.pump.mark(q);
  }

  suspendBinding(name: string): void {
    this.deps.bindings.suspend(name);
    this.parkAll(this.queues.ofBinding(name), 'suspended');
  }

  resumeBinding(name: string): void {
    this.deps.bindings.resume(name);
    for (const q of this.queues.ofBinding(name)) this.pump.mark(q);
  }

  /** Another node of the cluster delayed the domain (mx_failures_to_delay): it is held here too until `until`. */
  delayDomain(domain: string, until: number, why: Reply): void {
    const now = this.deps.clock.now();
    if (until <= now) return;
    this.deps.log.info({ event: 'domain_delayed', domain, until: new Date(until).toISOString(), by: 'cluster' }, 'domain delayed by another node');
    this.maintainer.holdDomain(this.records.get(domain), until, why, now);
  }

  /** An operator's flush: the domain's delay and its queues' pacing end, so its mail goes now. */
  flush(domain?: string): void {
    const now = this.deps.clock.now();
    const records = domain === undefined ? [...this.records.all()] : [this.records.find(domain)].filter((r) => r !== undefined);
    for (const record of records) {
      record.applyDelay({ kind: 'flush' });
      for (const q of this.queues.ofDomain(record.domain)) {
        q.to('flushed', now);
        this.pump.mark(q);
      }
    }
  }

  /**
   * An operator's fail: held mail that `match` selects fails with `why` (with no bounce when quiet).
   * Mail on a connection finishes the transaction it is in. Returns how many were failed.
   */
  failHeld(match: (e: Entry) => boolean, why: Reply, quiet: boolean): number {
    let failed = 0;
    for (const q of this.queues.all()) {
      const keep: Entry[] = [];
      for (const e of q.entries) {
        if (!match(e)) {
          keep.push(e);
          continue;
        }
        failed++;
        void e.resolve({ kind: 'attempted', attempt: chargedAttempt(e.recipients, why, 'admin_fail', undefined, quiet) });
      }
      q.entries = keep;
    }
    return failed;
  }

  /** A reload changed the configuration: every queue with mail is looked at again under the new caps. */
  reconfigure(): void {
    for (const q of this.queues.all()) if (q.entries.length > 0) this.pump.mark(q);
    this.maintainer.capacityFreed();
  }

  /** Messages held in ready queues or on a connection. */
  get heldCount(): number {
    return this.backlog.heldCount;
  }

  /** The summary's figures, without building every domain's view. */
  totals(): { connections: number; connecting: number; held: number; activeDomains: number } {
    const activeDomains = new Set<string>();
    for (const q of this.queues.all()) if (q.backlog > 0) activeDomains.add(q.domain);
    return { connections: this.maintainer.connections.size, connecting: this.maintainer.connecting, held: this.backlog.heldCount, activeDomains: activeDomains.size };
  }

  /** The ready queues with mail or connections, as figures (what a heartbeat tells the other nodes); no view is built. */
  queueFigures(): Array<{ domain: string; binding: string; ready: number; in_flight: number; connections: number; connecting: number }> {
    const out = [];
    for (const q of this.queues.all()) {
      if (q.entries.length + q.inFlight + q.connections.size + q.connecting === 0) continue;
      out.push({ domain: q.domain, binding: q.binding.name, ready: q.entries.length, in_flight: q.inFlight, connections: q.connections.size, connecting: q.connecting });
    }
    return out;
  }

  /** Open connections per binding. */
  connectionsByBinding(): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of this.maintainer.connections) out.set(c.queue.binding.name, (out.get(c.queue.binding.name) ?? 0) + 1);
    return out;
  }

  /** The MX host names of a domain as last resolved, lower case (a site-scoped action covers a domain by them). */
  mxHostsOf(domain: string): string[] {
    return this.records.find(domain)?.targets().map((t) => t.host.toLowerCase()) ?? [];
  }

  suspendedDomains(): string[] {
    return [...this.records.all()].filter((r) => r.suspended).map((r) => r.domain);
  }

  /** The observable state of every domain the scheduler knows, or of one. */
  state(domain?: string): SchedulerView {
    const now = this.deps.clock.now();
    const all = [...this.records.all()];
    const picked = domain === undefined ? all : all.filter((r) => r.domain === domain);
    return {
      connections: this.maintainer.connections.size,
      connecting: this.maintainer.connecting,
      held: this.backlog.heldCount,
      domains: picked.map((r) => domainView(
        r,
        [...this.queues.ofDomain(r.domain)].map((q) => queueView(q, this.deps.bindings, (key) => this.maintainer.throttleWait(q, key, now))),
        all.filter((o) => r.isSiblingOf(o)).map((o) => o.domain),
        now,
      )),
    };
  }

  /** Stops opening connections and parks every held job for immediate pick-up after restart. */
  close(): void {
    this.stopping = true;
    this.sweeper.cancel();
    this.parkAll(this.queues.all(), 'stopping');
    for (const c of this.maintainer.connections) c.nudge();
  }

  // DispatcherOwner: the side of the scheduler its connections see.

  options(q: ReadyQueue): ScopedValues {
    return this.deps.options.of(q.binding.name, q.domain);
  }

  take(d: Dispatcher): Entry | undefined {
    this.sites.lend(d);
    const q = d.queue;
    if (heldBy(q, this.holds, this.deps.clock.now())) return undefined;
    const e = q.entries.shift();
    if (e) {
      q.inFlight++;
      d.takenHere++;
    }
    this.backlog.refill(q);
    this.prefetch(q);
    return e;
  }

  migrate(d: Dispatcher): boolean | Promise<boolean> {
    return !this.stopping && this.sites.migrate(d);
  }

  throttleWait(q: ReadyQueue): number | Promise<number> {
    const local = this.maintainer.takeMessage(q);
    if (local > 0) return local;
    return this.deps.gate?.message(q.binding.name, q.domain) ?? 0;
  }

  giveBack(d: Dispatcher, entry: Entry, retryInMs: number): void {
    const q = d.queue;
    q.inFlight--;
    q.entries.unshift(entry);
    this.maintainer.wakeAt(q, this.deps.clock.now() + retryInMs);
  }

  complete(d: Dispatcher, entry: Entry, attempt: Attempt): void {
    const q = d.queue;
    q.inFlight--;
    const failure = attempt.replies.find((r) => !isSuccess(r.reply));
    if (failure) q.record.lastError = { reply: failure.reply, at: this.deps.clock.now() };
    observeAttempt((o) => this.deps.replies.observe(o), q, attempt);
    void entry.resolve({ kind: 'attempted', attempt });
  }

  abandon(d: Dispatcher, entry: Entry): void {
    d.queue.inFlight--;
    void entry.resolve({ kind: 'abandoned' });
  }

  closed(d: Dispatcher): void {
    this.maintainer.connections.delete(d);
    d.queue.connections.delete(d);
    this.maintainer.capacityFreed();
    this.pump.mark(d.queue);
  }

  isStopping(): boolean {
    return this.stopping;
  }

  /**
   * Starts reading the bodies of the messages the queue's connections take next, one per
   * connection (one for a queue waiting for its first): a body read waits for Redis's fsync of
   * whatever else is being written (4 ms seen under load), which a connection would otherwise spend
   * idle before each transaction.
   */
  private prefetch(q: ReadyQueue): void {
    const depth = Math.min(q.entries.length, Math.max(1, q.connections.size));
    for (let i = 0; i < depth; i++) q.entries[i]!.body.start();
  }

  /** Parks every held job of the queues: a suspension's are filed (resume promotes them), a stop's come back at once. */
  private parkAll(queues: Iterable<ReadyQueue>, reason: Extract<ParkReason, 'suspended' | 'shaping suspended' | 'stopping'>, end?: number): void {
    const now = this.deps.clock.now();
    const until = end ?? (reason === 'stopping' ? now : now + this.deps.options.global.suspended_recheck_interval);
    for (const q of queues) {
      for (let e = q.entries.shift(); e; e = q.entries.shift()) this.backlog.park(q, e, until, reason, reason !== 'stopping');
    }
  }

  /** The shaping suspension or bounce over the queue; nothing is built while no action is in force. */
  private shapingHold(q: ReadyQueue, kind: 'suspend' | 'bounce'): ShapingAction | undefined {
    return this.deps.shaping.inForce ? this.deps.shaping.holding(shapedQueue(q), kind) : undefined;
  }

  /**
   * A shaping action started or ended. A suspension parks the held mail of the queues it covers
   * until its end (mail on a connection finishes its transaction); a bounce fails it; a set only
   * has the queues looked at again under the options it overlays, as does any action's end.
   */
  private shaped(a: ShapingAction, change: ShapingChange): void {
    const covered = [...this.queues.all()].filter((q) => targetCovers(a.target, shapedQueue(q)));
    if (change === 'started' && a.action === 'suspend') this.parkAll(covered, 'shaping suspended', a.until);
    if (change === 'started' && a.action === 'bounce') {
      const why = bounceReply(a);
      for (const q of covered) {
        for (let e = q.entries.shift(); e; e = q.entries.shift()) void e.resolve({ kind: 'attempted', attempt: chargedAttempt(e.recipients, why, 'shaping_bounce') });
      }
    }
    for (const q of covered) this.pump.mark(q);
    this.maintainer.capacityFreed();
  }

  private sweepLater(): Timer {
    return this.deps.clock.after(SWEEP_INTERVAL_MS, () => {
      this.sweep();
      this.sweeper = this.sweepLater();
    });
  }

  /** Forgets queues and domains with nothing held, open, parked or delayed, so memory follows the live set. */
  private sweep(): void {
    const now = this.deps.clock.now();
    this.queues.sweep(
      (q) => !q.empty || this.backlog.hasParked(q) || q.wake !== undefined,
      (r) => r.suspended || r.delayedJobs > 0 || r.isDelayed(now) || r.mx.phase === 'resolving',
      {
        queue: (q) => {
          this.sites.forgetQueue(q);
          this.backlog.forget(q);
        },
        record: (r) => this.sites.leave(r),
      },
    );
  }
}

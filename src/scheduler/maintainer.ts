// Momentum's mail queue maintainer for one ready queue at a time: connections toward a goal that
// grows with the queue, under every cap and throttle, opened through the initiator; a failed
// attempt's flags and counts become Momentum's actions on held mail (failure-plan.ts).
import type { Logger } from 'pino';
import { DEFAULT_BINDING } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import { type Reply, reply } from '../core/reply.js';
import type { DeliveryOptions } from '../config/delivery-options.js';
import type { DomainRecord } from '../delivery/domain-record.js';
import { CONN_ERROR_MX_LOOKUP_PENDING, flagNames } from '../delivery/flags.js';
import type { ConnectionError, ConnectionHandle, Initiator } from '../delivery/initiator.js';
import { type Action, chargedAttempt } from '../outcome/attempt.js';
import { retryPolicyOf } from '../outcome/retry.js';
import type { Backlog } from './backlog.js';
import { Dispatcher, type DispatcherOwner } from './dispatcher.js';
import type { Entry } from './entry.js';
import { delayEnd, failurePlan } from './failure-plan.js';
import { connectionGoal, roomForConnections } from './policy.js';
import { type Holds, type ReadyQueue, type Throttle, heldBy } from './ready-queue.js';
import type { Sites } from './site.js';
import { Throttles } from './throttle.js';

/** What the scheduler reports for metrics. */
export interface SchedulerObserver {
  /** A connection attempt failed; flags are CONN_ERROR_* / CONN_ACTION_* names. */
  connectionFailed(binding: string, flags: readonly string[]): void;
  migrated(): void;
}

/** Longest a queue without connections waits for a sibling's connection before opening its own. */
const SIBLING_WAIT_MS = 1_000;

interface MaintainerDeps {
  initiator: Initiator;
  options: DeliveryOptions;
  holds: Holds;
  clock: Clock;
  log: Logger;
  observer: SchedulerObserver;
  backlog: Backlog;
  sites: Sites;
  owner: DispatcherOwner;
  /** Marks the queue for the pump: maintain() runs for it at the end of this turn. */
  mark(queue: ReadyQueue): void;
  /** The domain's ready queues, all bindings. */
  queuesOf(domain: string): Iterable<ReadyQueue>;
  stopping(): boolean;
  /** Told of each domain this node delays, so the other nodes of a cluster hold it too. */
  delayed(domain: string, until: number, reply: Reply, failures: number): void;
}

export class Maintainer {
  readonly connections = new Set<Dispatcher>();
  connecting = 0;
  private readonly throttles = new Throttles();
  /** Queues that want more connections than a shared cap (scope, server) allows now. */
  private readonly blocked = new Set<ReadyQueue>();

  constructor(private readonly deps: MaintainerDeps) {}

  /** Refills the queue, then opens connections toward its goal, or notes why not and when to look again. */
  maintain(q: ReadyQueue): void {
    const { backlog, sites, clock } = this.deps;
    backlog.refill(q);
    if (this.deps.stopping()) return;
    const now = clock.now();
    if (q.entries.length === 0) return q.to({ phase: 'idle' }, now);
    const held = heldBy(q, this.deps.holds, now);
    if (held) {
      q.to({ phase: 'held', by: held }, now);
      if (q.record.delay.phase === 'delayed') this.wakeAt(q, q.record.delay.until);
      return;
    }
    for (const c of q.connections) if (c.isIdle) c.nudge();
    let room = this.room(q);
    if (room > 0) room -= sites.takeOver(q, room, this.connections);
    if (q.phase.phase === 'paced' && q.phase.until > now) return this.wakeAt(q, q.phase.until);
    if (room === 0) {
      if (this.goal(q) <= q.open) return q.to({ phase: 'served' }, now);
      this.blocked.add(q);
      return q.to({ phase: 'waiting', on: 'connection_cap' }, now);
    }
    const siteRoom = sites.room(q, now);
    if (siteRoom <= 0) {
      if (q.open > 0) return q.to({ phase: 'served' }, now);
      // A queue with no connection at all gets one of its own if no sibling's comes over in time.
      q.to({ phase: 'awaiting_sibling', since: now }, now);
      const since = q.phase.phase === 'awaiting_sibling' ? q.phase.since : now;
      if (now - since < SIBLING_WAIT_MS) {
        sites.starve(q);
        return this.wakeAt(q, since + SIBLING_WAIT_MS);
      }
      room = Math.min(room, 1);
    } else {
      room = Math.min(room, siteRoom);
    }
    sites.fed(q);
    // A connection opened while the message throttle is spent would only idle, and one that would
    // wait longer than idle_timeout would give its message back and close: wait here instead.
    const messageWait = this.throttle(q, 'outbound_throttle_messages')?.wait(now) ?? 0;
    if (messageWait > 0 && (q.connections.size > 0 || messageWait > this.deps.options.of(q.binding.name, q.domain).idle_timeout)) {
      return this.throttled(q, 'outbound_throttle_messages', now + messageWait, now);
    }
    const throttle = this.throttle(q, 'outbound_throttle_connections');
    for (; room > 0; room--) {
      const wait = throttle?.wait(now) ?? 0;
      if (wait > 0) return this.throttled(q, 'outbound_throttle_connections', now + wait, now);
      if (!this.initiate(q, now)) return;
      sites.opened(q);
      throttle?.take(now);
    }
    q.to({ phase: 'served' }, now);
  }

  /** New connections (or moved ones) the queue may take now. */
  room(q: ReadyQueue): number {
    const { options } = this.deps;
    const o = options.of(q.binding.name, q.domain);
    const scope = options.scopeOf(q.binding.name, q.domain, 'scope_max_outbound_connections');
    let scopeOpen = 0;
    for (const p of this.deps.queuesOf(q.domain)) {
      if (p === q || options.scopeOf(p.binding.name, p.domain, 'scope_max_outbound_connections') === scope) scopeOpen += p.open;
    }
    return roomForConnections({
      goal: this.goal(q), queue: q.open, scope: scopeOpen, scopeMax: o.scope_max_outbound_connections,
      server: this.connections.size + this.connecting, serverMax: options.global.server_max_outbound_connections,
    });
  }

  /** Milliseconds until the message throttle allows a message on the queue; 0 takes one now. */
  takeMessage(q: ReadyQueue): number {
    const now = this.deps.clock.now();
    const t = this.throttle(q, 'outbound_throttle_messages');
    const wait = t?.wait(now) ?? 0;
    if (wait === 0) t?.take(now);
    return wait;
  }

  /** Milliseconds until the throttle allows the next event; 0 when free or unthrottled. */
  throttleWait(q: ReadyQueue, key: Throttle, now: number): number {
    return this.throttle(q, key)?.wait(now) ?? 0;
  }

  /** A connection closed or an attempt ended: queues held back by a shared cap look again. */
  capacityFreed(): void {
    for (const q of this.blocked) this.deps.mark(q);
    this.blocked.clear();
  }

  /** The maintainer looks at the queue again at `at`. */
  wakeAt(q: ReadyQueue, at: number): void {
    const { clock } = this.deps;
    q.wake?.cancel();
    q.wake = clock.after(at - clock.now(), () => {
      q.wake = undefined;
      this.deps.mark(q);
    });
  }

  /** Settles every held message of the queue with a reply it did not reach a server for. */
  drain(q: ReadyQueue, action: Action, why: Reply, flags: number | undefined): void {
    for (let e = q.entries.shift(); e; e = q.entries.shift()) this.charge(e, action, why, flags);
  }

  private goal(q: ReadyQueue): number {
    const o = this.deps.options.of(q.binding.name, q.domain);
    return connectionGoal(q.backlog, o.max_outbound_connections, o.connection_allocation_aggressiveness);
  }

  private throttle(q: ReadyQueue, key: Throttle) {
    const rate = this.deps.options.of(q.binding.name, q.domain)[key];
    return rate ? this.throttles.get(this.deps.options.scopeOf(q.binding.name, q.domain, key), rate) : undefined;
  }

  private throttled(q: ReadyQueue, throttle: Throttle, until: number, now: number): void {
    q.to({ phase: 'throttled', until, throttle }, now);
    this.wakeAt(q, until);
  }

  /** The maintainer looks at the queue again once `p` settles; one wait per queue, however often it is asked. */
  private wakeOn(q: ReadyQueue, p: Promise<void>): void {
    if (q.awaiting === p) return;
    q.awaiting = p;
    void p.then(() => {
      if (q.awaiting === p) q.awaiting = undefined;
      this.deps.mark(q);
    });
  }

  private initiate(q: ReadyQueue, now: number): boolean {
    const done = (handle: ConnectionHandle, err?: ConnectionError) => this.connected(q, handle, err);
    const r = this.deps.initiator.initiateConnection(q.record, q.binding, now, done, done);
    if ('error' in r) {
      // A wait (lookup in flight, every MX at its limit) is not a failure: look again when it ends.
      if (r.retry) {
        q.to({ phase: 'waiting', on: r.error & CONN_ERROR_MX_LOOKUP_PENDING ? 'mx_lookup' : 'host_limit' }, now);
        this.wakeOn(q, r.retry);
      } else {
        this.failed(q, r.error, r.reply, now);
      }
      return false;
    }
    q.connecting++;
    this.connecting++;
    return true;
  }

  private connected(q: ReadyQueue, handle: ConnectionHandle, err: ConnectionError | undefined): void {
    q.connecting--;
    this.connecting--;
    const now = this.deps.clock.now();
    if (err?.retry) {
      // A cluster limit is a wait, not a failure: looked at again once a lease frees or the throttle allows.
      q.to({ phase: 'waiting', on: 'cluster_limit' }, now);
      this.wakeOn(q, err.retry);
      this.capacityFreed();
      return;
    }
    if (err) {
      this.failed(q, err.flags, err.reply, now);
      this.capacityFreed();
      return;
    }
    if (this.deps.stopping()) {
      handle.close();
      return;
    }
    if (q.record.delay.phase === 'delayed') {
      this.deps.log.info({ event: 'domain_undelayed', domain: q.domain, binding: q.binding.name }, 'connection succeeded; domain no longer delayed');
    }
    q.record.applyDelay({ kind: 'connected' });
    const d = new Dispatcher(q, handle, this.deps.owner, this.deps.clock);
    q.connections.add(d);
    this.connections.add(d);
    void d.run();
  }

  /** A connection attempt failed: Momentum's actions, then mx_failures_to_delay or a pause. */
  private failed(q: ReadyQueue, flags: number, why: Reply, now: number): void {
    const record = q.record;
    this.deps.observer.connectionFailed(q.binding.name, flagNames(flags));
    record.lastError = { reply: why, flags, at: now };
    const o = this.deps.options.of(q.binding.name, q.domain);
    const plan = failurePlan({
      flags, consecutiveFailures: record.consecutiveFailures, mxFailuresToDelay: o.mx_failures_to_delay,
      alreadyDelayed: record.isDelayed(now), hostFailureRetry: o.host_failure_retry, now,
    });
    if (plan.charge === 'domain') {
      for (const p of this.deps.queuesOf(q.domain)) {
        this.drain(p, 'purge_domain', why, flags);
        // Looked at again, so an emptied queue shows idle rather than the wait it was in.
        this.deps.mark(p);
      }
    } else if (plan.charge === 'head') {
      const e = q.entries.shift();
      if (e) this.charge(e, 'requeue1', why, flags);
    }
    if (plan.delayDomain) return this.delayDomain(record, now);
    if (plan.paceUntil === undefined) return;
    q.to({ phase: 'paced', until: plan.paceUntil, reason: why }, now);
    if (q.entries.length > 0) this.wakeAt(q, plan.paceUntil);
  }

  /** mx_failures_to_delay reached: every held message of the domain is deferred, no connection until the earliest next attempt. */
  private delayDomain(record: DomainRecord, now: number): void {
    const { options } = this.deps;
    const failures = record.consecutiveFailures;
    const why = reply(451, '4.4.1', `[internal] ${failures} consecutive connection failures to the MXs of ${record.domain}; domain delayed`);
    const queues = [...this.deps.queuesOf(record.domain)];
    const policy = (q: ReadyQueue) => retryPolicyOf(options.of(q.binding.name, record.domain));
    const held = queues.flatMap((q) => q.entries.map((e) => ({ attempts: e.attempts, policy: policy(q) })));
    const first = queues.find((q) => q.entries.length > 0) ?? queues[0];
    const until = delayEnd(now, held, retryPolicyOf(options.of(first?.binding.name ?? DEFAULT_BINDING, record.domain)));
    this.deps.log.warn({
      event: 'domain_delayed', domain: record.domain, consecutive_failures: failures, messages: held.length, until: new Date(until).toISOString(),
      last_error: record.lastError ? `${record.lastError.reply.code} ${record.lastError.reply.text}` : undefined,
    }, 'domain delayed after consecutive connection failures');
    this.holdDomain(record, until, why, now);
    this.deps.delayed(record.domain, until, why, failures);
  }

  /** The domain is delayed until `until` (here or on another node): its held mail is deferred, no connection before then. */
  holdDomain(record: DomainRecord, until: number, why: Reply, now: number): void {
    record.applyDelay({ kind: 'delay', until, reason: why });
    for (const q of this.deps.queuesOf(record.domain)) {
      this.drain(q, 'delay_domain', why, record.lastError?.flags);
      q.to({ phase: 'held', by: 'domain_delayed' }, now);
      this.wakeAt(q, until);
    }
  }

  private charge(e: Entry, action: Action, why: Reply, flags: number | undefined): void {
    void e.resolve({ kind: 'attempted', attempt: chargedAttempt(e.recipients, why, action, flags) });
  }
}

// One binding × domain queue of held mail and the connections serving it (Momentum's per-binding
// active queue of a domain, KumoMTA's ready queue). Its phase says what the queue is doing about
// connections; it changes only through queueTransition() and is what the admin API shows.
import type { Binding } from '../binding/registry.js';
import type { Timer } from '../core/clock.js';
import type { Reply } from '../core/reply.js';
import type { DomainRecord } from '../delivery/domain-record.js';
import type { ConnectionHandle } from '../delivery/initiator.js';
import type { Entry } from './entry.js';

/** How a ready queue is named outside the scheduler: in Redis (parked mail) and to operators. */
export interface ReadyQueueId {
  binding: string;
  domain: string;
}

/** A connection serving the queue, as the queue sees it. */
export interface QueueConnection {
  readonly handle: ConnectionHandle;
  readonly isIdle: boolean;
  /** Ends an idle wait: there may be work. */
  nudge(): void;
}

export type Throttle = 'outbound_throttle_messages' | 'outbound_throttle_connections';

type HeldBy = 'domain_suspended' | 'binding_suspended' | 'shaping_suspended' | 'domain_delayed';

export type QueuePhase =
  /** Holds no mail. */
  | { phase: 'idle' }
  /** Holds mail, and has (or is opening) the connections its goal and caps allow. */
  | { phase: 'served' }
  /** A connection attempt failed: no new one before `until` (host_failure_retry). */
  | { phase: 'paced'; until: number; reason: Reply }
  | { phase: 'throttled'; until: number; throttle: Throttle }
  /** Waits for a lookup in flight, a place at an MX host at its limit, or room under a shared cap. */
  | { phase: 'waiting'; on: 'mx_lookup' | 'host_limit' | 'connection_cap' | 'cluster_limit' }
  /** Its site is at its connection goal: waits for a sibling's connection, then opens its own. */
  | { phase: 'awaiting_sibling'; since: number }
  /** Its domain or binding is suspended (by an operator or a shaping rule), or its domain delayed. */
  | { phase: 'held'; by: HeldBy };

/** What the maintainer found the queue doing, or an operator's flush (pacing and waits end). */
export type QueueEvent = QueuePhase | 'flushed';

export function queueTransition(phase: QueuePhase, event: QueueEvent, now: number): QueuePhase {
  if (event === 'flushed') return { phase: 'idle' };
  // Pacing outlasts everything else until its time, so mail arriving meanwhile is not charged one
  // failed connection after another; only a new failure paces anew.
  if (event.phase === 'paced') return event;
  if (phase.phase === 'paced' && now < phase.until) return phase;
  // A sibling wait keeps its start however often it is found again.
  if (event.phase === 'awaiting_sibling' && phase.phase === 'awaiting_sibling') return phase;
  return event;
}

export class ReadyQueue {
  /** Held mail waiting for a connection, oldest first. */
  entries: Entry[] = [];
  readonly connections = new Set<QueueConnection>();
  connecting = 0;
  /** Entries taken by a connection and not yet resolved. */
  inFlight = 0;
  phase: QueuePhase = { phase: 'idle' };
  /** The maintainer's own next look at the queue (a pacing, throttle or sibling wait ends). */
  wake: Timer | undefined;
  /** What the queue waits on before it is looked at again (a lookup, a place at a host), awaited once. */
  awaiting: Promise<void> | undefined;

  constructor(readonly record: DomainRecord, readonly binding: Binding) {}

  get domain(): string {
    return this.record.domain;
  }

  get id(): ReadyQueueId {
    return { binding: this.binding.name, domain: this.record.domain };
  }

  /** Connections open and being opened. */
  get open(): number {
    return this.connections.size + this.connecting;
  }

  /** Held and on a connection: what the connection goal follows. */
  get backlog(): number {
    return this.entries.length + this.inFlight;
  }

  /** Nothing held, nothing open: the queue can be forgotten. */
  get empty(): boolean {
    return this.entries.length === 0 && this.inFlight === 0 && this.open === 0;
  }

  to(event: QueueEvent, now: number): void {
    this.phase = queueTransition(this.phase, event, now);
  }
}

/** What may hold a queue besides its domain record: its binding suspended, a shaping suspension over it. */
export interface Holds {
  isSuspended(binding: string): boolean;
  shapingSuspends(queue: ReadyQueue): boolean;
}

/** What keeps the queue from delivering now: its domain or binding suspended, a shaping suspension, or its domain delayed. */
export function heldBy(queue: ReadyQueue, holds: Holds, now: number): HeldBy | undefined {
  if (queue.record.suspended) return 'domain_suspended';
  if (holds.isSuspended(queue.binding.name)) return 'binding_suspended';
  if (holds.shapingSuspends(queue)) return 'shaping_suspended';
  if (queue.record.isDelayed(now)) return 'domain_delayed';
  return undefined;
}

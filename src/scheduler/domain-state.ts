// The scheduler's per-domain and per binding × domain state: Momentum's mail_queue with its
// per-binding active queues. Only the scheduler changes it; the phase is a union changed by
// transition() alone.
import type { Binding } from '../binding/registry.js';
import type { Reply } from '../core/reply.js';
import type { DomainRecord } from '../delivery/domain-record.js';
import type { Target } from '../delivery/route.js';
import type { OutboundConnection } from './connection.js';
import type { Entry } from './entry.js';

export type DomainPhase =
  | { phase: 'normal' }
  | { phase: 'delayed'; until: number; reason: Reply };

export type PhaseEvent =
  | { kind: 'delay'; until: number; reason: Reply }
  | { kind: 'connected' }
  /** An operator's flush: delayed mail is due now. */
  | { kind: 'flush' }
  | { kind: 'tick'; now: number };

export function transition(state: DomainPhase, event: PhaseEvent): DomainPhase {
  switch (event.kind) {
    case 'delay':
      return { phase: 'delayed', until: event.until, reason: event.reason };
    case 'connected':
    case 'flush':
      return { phase: 'normal' };
    case 'tick':
      return state.phase === 'delayed' && event.now >= state.until ? { phase: 'normal' } : state;
  }
}

export interface LastError {
  reply: Reply;
  flags?: number | undefined;
  at: number;
}

/** One binding's active queue for a domain, with the connections serving it. */
export class Pair {
  ready: Entry[] = [];
  readonly connections = new Set<OutboundConnection>();
  connecting = 0;
  /** Entries handed to a connection and not yet settled. */
  inFlight = 0;
  /** Jobs filed as parked with this pair in Redis, as last counted (a hint: other daemons park too). */
  parked = 0;
  /** Jobs promoted and not yet arrived, and when the last promotion was asked for. */
  incoming = 0;
  promotedAt = 0;
  promoting = false;
  /** Parks filed while a promotion was on its way: its count of what stays may not include them. */
  filedDuringPromotion = 0;
  /** No connection attempt before this time (after a failed one). */
  retryAt = 0;
  timer: NodeJS.Timeout | undefined;
  waitingForLookup = false;
  waitingForHost = false;
  /** Since when the pair, with no connection of its own, has waited for a sibling's. */
  siblingWaitSince: number | undefined;

  constructor(readonly state: DomainState, readonly binding: Binding) {}

  get domain(): string {
    return this.state.domain;
  }

  get open(): number {
    return this.connections.size + this.connecting;
  }

  idle(): OutboundConnection[] {
    return [...this.connections].filter((c) => c.isIdle);
  }

  /** Nothing held, nothing open: the pair can be forgotten. */
  get empty(): boolean {
    return this.ready.length === 0 && this.inFlight === 0 && this.open === 0;
  }
}

export class DomainState {
  phase: DomainPhase = { phase: 'normal' };
  suspended = false;
  readonly pairs = new Map<string, Pair>();
  /** Jobs of this domain in BullMQ's delayed set that this daemon put there. */
  delayed = 0;
  lastError: LastError | undefined;
  phaseTimer: NodeJS.Timeout | undefined;
  /** The sibling pool the domain is filed in: its first MX host, as last resolved. */
  pool: string | undefined;

  constructor(readonly record: DomainRecord) {}

  get domain(): string {
    return this.record.domain;
  }

  apply(event: PhaseEvent): void {
    this.phase = transition(this.phase, event);
  }

  pair(binding: Binding): Pair {
    let p = this.pairs.get(binding.name);
    if (!p) {
      p = new Pair(this, binding);
      this.pairs.set(binding.name, p);
    }
    return p;
  }

  get active(): number {
    let n = 0;
    for (const p of this.pairs.values()) n += p.ready.length + p.inFlight;
    return n;
  }

  get connectionCount(): number {
    let n = 0;
    for (const p of this.pairs.values()) n += p.open;
    return n;
  }

  /** MX targets of the domain as last resolved. */
  targets(): readonly Target[] {
    return this.record.mx.phase === 'resolved' ? this.record.mx.targets : [];
  }

  /** True when a connection to `target` can serve this domain: it is one of its MX hosts or addresses. */
  reaches(target: Pick<Target, 'host' | 'address'>): boolean {
    return this.targets().some((t) => t.host === target.host || t.address === target.address);
  }

  /** Shares an MX host or address with `other` (Momentum's sibling domains). */
  isSiblingOf(other: DomainState): boolean {
    return other !== this && other.targets().some((t) => this.reaches(t));
  }
}

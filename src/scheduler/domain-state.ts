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

/** Completions over a sliding window, for the drain rate that paces parked mail. */
class DrainMeter {
  private windowStart = 0;
  private count = 0;
  private lastRate = 0;

  record(now: number): void {
    if (now - this.windowStart >= 10_000) {
      this.lastRate = this.windowStart === 0 ? 0 : this.count / ((now - this.windowStart) / 1000);
      this.windowStart = now;
      this.count = 0;
    }
    this.count++;
  }

  perSecond(now: number): number {
    const elapsed = (now - this.windowStart) / 1000;
    return Math.max(this.lastRate, elapsed > 1 ? this.count / elapsed : 0);
  }
}

/** One binding's active queue for a domain, with the connections serving it. */
export class Pair {
  ready: Entry[] = [];
  readonly connections = new Set<OutboundConnection>();
  connecting = 0;
  /** Entries handed to a connection and not yet settled. */
  inFlight = 0;
  /** Jobs this daemon parked because the queue was full and that have not come back. */
  parked = 0;
  readonly drain = new DrainMeter();
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

// Momentum's domain_record: everything the daemon knows of one destination domain: its MX state,
// consecutive connection failures and last error, whether it is delayed or suspended. Each state
// machine is a union changed by its one transition function, so every state the admin API shows
// is one the code can be in.
import type { Reply } from '../core/reply.js';
import type { LookupResult, Target } from './route.js';
import type { DestinationTls } from './tls-requirement.js';

type MxState =
  | { phase: 'unresolved' }
  | { phase: 'resolving'; settled: Promise<void> }
  | { phase: 'resolved'; targets: Target[]; expiresAt: number; tls: DestinationTls }
  | { phase: 'null_mx'; reply: Reply; expiresAt: number }
  | { phase: 'failed'; reply: Reply; expiresAt: number };

type MxEvent =
  | { kind: 'lookup_started'; settled: Promise<void> }
  | { kind: 'lookup_finished'; result: LookupResult; tls: DestinationTls; now: number };

/** How long a failed lookup is believed before the next attempt asks DNS again. */
const FAILED_LOOKUP_HOLD_MS = 5_000;

function mxTransition(state: MxState, event: MxEvent): MxState {
  switch (event.kind) {
    case 'lookup_started':
      return state.phase === 'resolving' ? state : { phase: 'resolving', settled: event.settled };
    case 'lookup_finished': {
      const r = event.result;
      if (r.kind === 'targets') return { phase: 'resolved', targets: r.targets, expiresAt: event.now + r.ttlMs, tls: event.tls };
      if (r.kind === 'null_mx') return { phase: 'null_mx', reply: r.reply, expiresAt: event.now + FAILED_LOOKUP_HOLD_MS };
      return { phase: 'failed', reply: r.reply, expiresAt: event.now + FAILED_LOOKUP_HOLD_MS };
    }
  }
}

/** mx_failures_to_delay: a delayed domain gets no connection before `until`. */
type DelayState =
  | { phase: 'normal' }
  | { phase: 'delayed'; until: number; reason: Reply };

type DelayEvent =
  | { kind: 'delay'; until: number; reason: Reply }
  /** A connection to one of its MXs succeeded. */
  | { kind: 'connected' }
  /** An operator's flush: delayed mail is due now. */
  | { kind: 'flush' }
  | { kind: 'tick'; now: number };

export function delayTransition(state: DelayState, event: DelayEvent): DelayState {
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

interface LastError {
  reply: Reply;
  flags?: number | undefined;
  at: number;
}

export class DomainRecord {
  mx: MxState = { phase: 'unresolved' };
  consecutiveFailures = 0;
  lastError: LastError | undefined;
  delay: DelayState = { phase: 'normal' };
  /** An operator's suspension (Momentum's suspend_delivery), in this daemon's memory. */
  suspended = false;
  /** Jobs of the domain this daemon put in BullMQ's delayed set (retries, parks) that have not come back. */
  delayedJobs = 0;

  constructor(readonly domain: string) {}

  applyMx(event: MxEvent): void {
    this.mx = mxTransition(this.mx, event);
  }

  applyDelay(event: DelayEvent): void {
    this.delay = delayTransition(this.delay, event);
  }

  /** True while the domain is delayed at `now` (a delay past its end is over). */
  isDelayed(now: number): boolean {
    this.applyDelay({ kind: 'tick', now });
    return this.delay.phase === 'delayed';
  }

  /** True when the MX state must be (re)fetched before a connection can be chosen. */
  needsLookup(now: number): boolean {
    return this.mx.phase === 'unresolved' || (this.mx.phase !== 'resolving' && now >= this.mx.expiresAt);
  }

  recordFailure(): void {
    this.consecutiveFailures++;
  }

  recordSuccess(): void {
    this.consecutiveFailures = 0;
  }

  /** MX targets as last resolved. */
  targets(): readonly Target[] {
    return this.mx.phase === 'resolved' ? this.mx.targets : [];
  }

  /** True when a connection to `target` can serve this domain: it is one of its MX hosts or addresses. */
  reaches(target: Pick<Target, 'host' | 'address'>): boolean {
    return this.targets().some((t) => t.host === target.host || t.address === target.address);
  }

  /** Shares an MX host or address with `other` (Momentum's sibling domains). */
  isSiblingOf(other: DomainRecord): boolean {
    return other !== this && other.targets().some((t) => this.reaches(t));
  }
}

/** Domain records by name, created on first use; the scheduler forgets idle ones. */
export class DomainRecords {
  private readonly records = new Map<string, DomainRecord>();

  get(domain: string): DomainRecord {
    let r = this.records.get(domain);
    if (!r) {
      r = new DomainRecord(domain);
      this.records.set(domain, r);
    }
    return r;
  }

  find(domain: string): DomainRecord | undefined {
    return this.records.get(domain);
  }

  all(): IterableIterator<DomainRecord> {
    return this.records.values();
  }

  delete(domain: string): void {
    this.records.delete(domain);
  }
}

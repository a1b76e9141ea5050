// Momentum's domain_record: per destination domain, the MX lookup state and the count of
// consecutive connection failures across its MXs. The lookup state is a union changed only by
// transition(), so every state the admin API shows is one the code can be in.
import type { Reply } from '../core/reply.js';
import type { LookupResult, Target } from './route.js';

export type MxState =
  | { phase: 'unresolved' }
  | { phase: 'resolving'; settled: Promise<void> }
  | { phase: 'resolved'; targets: Target[]; expiresAt: number }
  | { phase: 'null_mx'; reply: Reply; expiresAt: number }
  | { phase: 'failed'; reply: Reply; expiresAt: number };

export type MxEvent =
  | { kind: 'lookup_started'; settled: Promise<void> }
  | { kind: 'lookup_finished'; result: LookupResult; now: number };

/** How long a failed lookup is believed before the next attempt asks DNS again. */
export const FAILED_LOOKUP_HOLD_MS = 5_000;

export function transition(state: MxState, event: MxEvent): MxState {
  switch (event.kind) {
    case 'lookup_started':
      return state.phase === 'resolving' ? state : { phase: 'resolving', settled: event.settled };
    case 'lookup_finished': {
      const r = event.result;
      if (r.kind === 'targets') return { phase: 'resolved', targets: r.targets, expiresAt: event.now + r.ttlMs };
      if (r.kind === 'null_mx') return { phase: 'null_mx', reply: r.reply, expiresAt: event.now + FAILED_LOOKUP_HOLD_MS };
      return { phase: 'failed', reply: r.reply, expiresAt: event.now + FAILED_LOOKUP_HOLD_MS };
    }
  }
}

export class DomainRecord {
  mx: MxState = { phase: 'unresolved' };
  consecutiveFailures = 0;

  constructor(readonly domain: string) {}

  apply(event: MxEvent): void {
    this.mx = transition(this.mx, event);
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

  delete(domain: string): void {
    this.records.delete(domain);
  }
}

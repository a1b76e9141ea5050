// The scheduler's ready queues by destination domain and binding, over the domain records they
// share, and the sweep that forgets what has gone quiet so memory follows the live set.
import type { Binding } from '../binding/registry.js';
import { type DomainRecord, DomainRecords } from '../delivery/domain-record.js';
import { ReadyQueue } from './ready-queue.js';

const NONE = new Map<string, ReadyQueue>();

export class ReadyQueues {
  readonly records = new DomainRecords();
  /** Ready queues by domain, then binding name. */
  private readonly byDomain = new Map<string, Map<string, ReadyQueue>>();

  /** The queue of the domain and binding, made on first use. */
  of(domain: string, binding: Binding): ReadyQueue {
    let byBinding = this.byDomain.get(domain);
    if (!byBinding) this.byDomain.set(domain, byBinding = new Map());
    let q = byBinding.get(binding.name);
    if (!q) {
      q = new ReadyQueue(this.records.get(domain), binding);
      byBinding.set(binding.name, q);
    }
    return q;
  }

  find(domain: string, binding: string): ReadyQueue | undefined {
    return this.byDomain.get(domain)?.get(binding);
  }

  ofDomain(domain: string): IterableIterator<ReadyQueue> {
    return (this.byDomain.get(domain) ?? NONE).values();
  }

  *ofBinding(binding: string): IterableIterator<ReadyQueue> {
    for (const queues of this.byDomain.values()) {
      const q = queues.get(binding);
      if (q) yield q;
    }
  }

  *all(): IterableIterator<ReadyQueue> {
    for (const queues of this.byDomain.values()) yield* queues.values();
  }

  /**
   * Forgets the queues `keep` lets go, then the records of domains left without a queue that
   * `keepRecord` lets go; each is reported as it goes.
   */
  sweep(keep: (q: ReadyQueue) => boolean, keepRecord: (r: DomainRecord) => boolean, forgot: { queue(q: ReadyQueue): void; record(r: DomainRecord): void }): void {
    for (const [domain, queues] of this.byDomain) {
      for (const [binding, q] of queues) {
        if (keep(q)) continue;
        queues.delete(binding);
        forgot.queue(q);
      }
      if (queues.size === 0) this.byDomain.delete(domain);
    }
    for (const record of [...this.records.all()]) {
      if (this.byDomain.has(record.domain) || keepRecord(record)) continue;
      forgot.record(record);
      this.records.delete(record.domain);
    }
  }
}

// Mail the scheduler does not hold. A park goes back to Redis with no attempt charged; one for a
// full queue or a suspension is filed in its ready queue's parked set and promoted as the queue
// and the window have room. The only owner of parked counts, of the window's count of held jobs,
// and of the Redis index of parked mail.
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Entry, ParkReason } from './entry.js';
import { refillCount, windowLimit } from './policy.js';
import { type Holds, type ReadyQueue, type ReadyQueueId, heldBy } from './ready-queue.js';

/** Where parked job ids are filed per ready queue: Redis in production (queue/parked-index.ts). */
export interface ParkedIndex {
  file(queue: ReadyQueueId, jobId: string, at: number): Promise<void>;
  /** Drops an id whose job came back by itself: a later promotion must not bring it back early. */
  unfile(queue: ReadyQueueId, jobId: string): Promise<void>;
  /** Makes up to `count` of the queue's oldest parked jobs due now; how many moved, and how many stay filed. */
  promote(queue: ReadyQueueId, count: number): Promise<{ promoted: number; remaining: number }>;
  /** Every queue with filed jobs, whoever filed them: what a starting daemon looks at first. */
  queues(): Promise<ReadyQueueId[]>;
}

interface Parked {
  /** Jobs filed for the queue, as last counted (a hint: other daemons park too). */
  count: number;
  /** Jobs promoted and not yet arrived, and when the last promotion was asked for. */
  incoming: number;
  promotedAt: number;
  promoting: boolean;
  /** Jobs filed while a promotion was on its way: its count of what stays may not include them. */
  filedDuringPromotion: number;
}

/** Promoted jobs not seen after this are no longer expected (another daemon took them, or they were failed). */
const INCOMING_STALE_MS = 30_000;

interface BacklogDeps {
  index: ParkedIndex;
  holds: Holds;
  clock: Pick<Clock, 'now'>;
  log: Logger;
  /** The window: jobs held at most (max_active_messages). */
  maxHeld: number;
  maxReady(queue: ReadyQueue): number;
  stopping(): boolean;
  /** A held job resolved while queues wait for window room: refillWaiting() should run soon. */
  windowFreed(): void;
}

export class Backlog {
  /** Jobs held (in a ready queue or on a connection) and not yet resolved. */
  private held = 0;
  /** Promoted jobs expected back, over all queues. */
  private incoming = 0;
  private readonly parked = new Map<ReadyQueue, Parked>();
  /** Queues with parked mail that found the window full: promoted as it frees. */
  private readonly waitingForWindow = new Set<ReadyQueue>();

  constructor(private readonly deps: BacklogDeps) {}

  get heldCount(): number {
    return this.held;
  }

  get windowLimit(): number {
    return windowLimit(this.deps.maxHeld);
  }

  /** Whether the queue has parked mail filed in Redis, as far as this daemon knows. */
  hasParked(queue: ReadyQueue): boolean {
    return (this.parked.get(queue)?.count ?? 0) > 0;
  }

  /** The entry as its ready queue holds it: the window counts it until it is resolved. */
  hold(queue: ReadyQueue, entry: Entry): Entry {
    this.held++;
    return {
      ...entry,
      resolve: (outcome) => {
        this.held--;
        if (this.waitingForWindow.size > 0) this.deps.windowFreed();
        const landed = entry.resolve(outcome);
        if (outcome.kind === 'attempted') {
          void landed.then((delayed) => {
            if (delayed) queue.record.delayedJobs++;
          });
        }
        return landed;
      },
    };
  }

  /** Sends the entry back to Redis until `until`; a filed park goes into the queue's parked set once the job is in the delayed set. */
  park(queue: ReadyQueue, entry: Entry, until: number, reason: ParkReason, filed: boolean): void {
    queue.record.delayedJobs++;
    void entry.resolve({ kind: 'parked', until, reason }).then((landed) => {
      if (!landed) return;
      // Logged only now, so an operator who sees it finds the job among the delayed.
      this.deps.log.debug({
        event: 'parked', qid: entry.qid, domain: entry.domain, binding: queue.binding.name, reason, until: new Date(until).toISOString(),
      }, 'parked');
      if (filed) this.file(queue, entry, until);
    });
  }

  /** A job came back from the delayed set to `queue`. */
  arrived(queue: ReadyQueue, entry: Entry): void {
    const returning = entry.returning;
    if (!returning) return;
    queue.record.delayedJobs = Math.max(0, queue.record.delayedJobs - 1);
    if (returning.from !== 'park') return;
    const p = this.of(queue);
    if (p.incoming > 0) {
      p.incoming--;
      this.incoming--;
    } else {
      // Not promoted here (it came on its fallback, or another daemon promoted it): the queue may
      // have parked mail this daemon does not know of.
      p.count = Math.max(p.count, 1);
    }
    if (!returning.promoted) {
      this.deps.index.unfile(queue.id, entry.jobId).catch((err: Error) => this.deps.log.warn(
        { event: 'unfile_failed', qid: entry.qid, job_id: entry.jobId, err: err.message },
        'a parked job that came back by itself is still filed; a promotion may bring its retry early'));
    }
  }

  /** A queue some daemon parked mail for (found at start): it promotes what it has room for, then keeps refilling. */
  adopt(queue: ReadyQueue): void {
    const p = this.of(queue);
    p.count = Math.max(p.count, 1);
    this.refill(queue);
  }

  /**
   * Promotes the queue's parked mail once it is half empty, up to max_ready and what the window has
   * left: the queue never runs dry while mail for it waits in Redis, and mail comes back only when
   * it will be held, so a backlog is read once.
   */
  refill(queue: ReadyQueue): void {
    const p = this.parked.get(queue);
    if (!p || p.count === 0) {
      this.waitingForWindow.delete(queue);
      return;
    }
    const now = this.deps.clock.now();
    if (p.promoting || this.deps.stopping() || heldBy(queue, this.deps.holds, now)) return;
    if (p.incoming > 0 && now - p.promotedAt > INCOMING_STALE_MS) {
      this.incoming -= p.incoming;
      p.incoming = 0;
    }
    const windowRoom = this.windowLimit - this.held - this.incoming;
    const count = refillCount({ ready: queue.entries.length, incoming: p.incoming, maxReady: this.deps.maxReady(queue), windowRoom });
    if (count === 0) {
      if (windowRoom <= 0) this.waitingForWindow.add(queue);
      return;
    }
    this.waitingForWindow.delete(queue);
    p.promoting = true;
    p.filedDuringPromotion = 0;
    p.promotedAt = now;
    p.incoming += count;
    this.incoming += count;
    const unexpect = (n: number) => {
      const k = Math.min(n, p.incoming);
      p.incoming -= k;
      this.incoming -= k;
    };
    this.deps.index.promote(queue.id, count).then(({ promoted, remaining }) => {
      // Over-counting costs one more promotion that finds nothing; under-counting would strand mail.
      p.count = remaining + p.filedDuringPromotion;
      unexpect(count - promoted);
      p.promoting = false;
      this.refill(queue);
    }, (err: Error) => {
      // Not retried at once: the next message taken or admitted for the queue tries again.
      unexpect(count);
      p.promoting = false;
      this.deps.log.warn({ event: 'promote_failed', domain: queue.domain, binding: queue.binding.name, err: err.message },
        'parked mail not promoted now; tried again as the queue drains, or it comes back at its fallback time');
    });
  }

  /** Queues that wanted window room get it, in the order they asked, while it lasts. */
  refillWaiting(): void {
    for (const q of [...this.waitingForWindow]) {
      if (this.held + this.incoming >= this.windowLimit) return;
      this.refill(q);
    }
  }

  forget(queue: ReadyQueue): void {
    this.parked.delete(queue);
    this.waitingForWindow.delete(queue);
  }

  private file(queue: ReadyQueue, entry: Entry, until: number): void {
    this.deps.index.file(queue.id, entry.jobId, this.deps.clock.now()).then(() => {
      const p = this.of(queue);
      p.count++;
      if (p.promoting) p.filedDuringPromotion++;
      this.refill(queue);
    }, (err: Error) => this.deps.log.warn(
      { event: 'park_unfiled', qid: entry.qid, job_id: entry.jobId, err: err.message, until: new Date(until).toISOString() },
      'parked job not filed with its queue; it comes back at its fallback time'));
  }

  private of(queue: ReadyQueue): Parked {
    let p = this.parked.get(queue);
    if (!p) {
      p = { count: 0, incoming: 0, promotedAt: 0, promoting: false, filedDuringPromotion: 0 };
      this.parked.set(queue, p);
    }
    return p;
  }
}

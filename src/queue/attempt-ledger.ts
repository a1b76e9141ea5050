// Each attempt of a job is made once per daemon, however many times BullMQ hands the job out.
// A job comes back while this daemon still works on it, or after it finished, when its lock lapsed
// before the attempt's outcome was written (a Redis outage longer than job_lock_timeout): the copy
// that comes back takes the update already decided instead of delivering the message again, and
// writes it with the lock it now holds.
import type { DeliveryJobData } from './job.js';

/**
 * What an attempt leaves in the job: it completes (with the finished record kept for operators),
 * or it waits in the delayed set with new data. `landed` is told once it is written.
 */
export type JobUpdate =
  | { kind: 'complete'; record: string; landed(delayed: boolean): void }
  | { kind: 'delay'; data: DeliveryJobData; until: number; landed(delayed: boolean): void }
  /** Another copy holds the job's lock (another node took it): this one writes nothing. */
  | { kind: 'abandon'; landed(delayed: boolean): void };

interface Entry {
  /** The job's attempt counter when the attempt began: a copy with the same count is the same attempt. */
  attempts: number;
  update: Promise<JobUpdate>;
  decidedAt?: number;
}

/** Updates never written are dropped after this: the job went to another daemon, or Redis lost it. */
const KEEP_UNWRITTEN_MS = 3_600_000;
const SWEEP_EVERY_MS = 60_000;

export class AttemptLedger {
  private readonly byJob = new Map<string, Entry>();
  private sweptAt = 0;

  constructor(private readonly now: () => number) {}

  /**
   * The update of this job's current attempt: the one already decided (or being decided) here for
   * an earlier copy of the job, or a new one from `decide`. `again` tells which.
   */
  join(jobId: string, data: DeliveryJobData, decide: () => Promise<JobUpdate>): { update: Promise<JobUpdate>; again: boolean } {
    this.sweep();
    const earlier = this.byJob.get(jobId);
    if (earlier && earlier.attempts === data.attempts) return { update: earlier.update, again: true };
    const entry: Entry = { attempts: data.attempts, update: decide() };
    const decided = () => {
      entry.decidedAt = this.now();
    };
    entry.update.then(decided, decided);
    this.byJob.set(jobId, entry);
    return { update: entry.update, again: false };
  }

  /** The update is in Redis, or the attempt failed outright: a later copy starts afresh. */
  forget(jobId: string): void {
    this.byJob.delete(jobId);
  }

  private sweep(): void {
    const now = this.now();
    if (now - this.sweptAt < SWEEP_EVERY_MS) return;
    this.sweptAt = now;
    for (const [id, a] of this.byJob) if (a.decidedAt !== undefined && now - a.decidedAt > KEEP_UNWRITTEN_MS) this.byJob.delete(id);
  }
}

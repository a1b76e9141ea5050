// Each attempt of a job is made once per daemon, however many times BullMQ hands the job out.
// A job comes back while this daemon still works on it, or after it finished, when its lock lapsed
// before the attempt's outcome was written (a Redis outage longer than job_lock_timeout): the copy
// that comes back takes the verdict already reached instead of delivering the message again, and
// writes it with the lock it now holds.
import type { DeliveryJobData } from './job.js';
import type { PairId } from './parking.js';

/**
 * What an attempt leaves in Redis: the job completes, or waits in the delayed set with new data;
 * `parkedIn` files a park with its pair so the pair promotes it when it has room (then calls
 * `filed`); `unpark` removes the id a returning parked job may have left there.
 */
export type Verdict =
  | { kind: 'complete'; record: string }
  | {
    kind: 'delay'; data: DeliveryJobData; until: number;
    parkedIn?: { pair: PairId; filed(): void } | undefined; unpark?: PairId | undefined;
    /** Set for a park (no attempt made): logged once the job is in the delayed set. */
    parked?: { binding: string; reason: string } | undefined;
  };

interface Attempt {
  /** The job's attempt counter when the attempt began: a copy with the same count is the same attempt. */
  attempts: number;
  verdict: Promise<Verdict>;
  decidedAt?: number;
}

/** Verdicts never written are dropped after this: the job went to another daemon, or Redis lost it. */
const KEEP_UNWRITTEN_MS = 3_600_000;
const SWEEP_EVERY_MS = 60_000;

export class Attempts {
  private readonly byJob = new Map<string, Attempt>();
  private sweptAt = 0;

  constructor(private readonly now: () => number) {}

  /**
   * The verdict of this job's current attempt: the one already reached (or being reached) here for
   * an earlier copy of the job, or a new one from `decide`. `again` tells which.
   */
  join(jobId: string, data: DeliveryJobData, decide: () => Promise<Verdict>): { verdict: Promise<Verdict>; again: boolean } {
    this.sweep();
    const earlier = this.byJob.get(jobId);
    if (earlier && earlier.attempts === data.attempts) return { verdict: earlier.verdict, again: true };
    const attempt: Attempt = { attempts: data.attempts, verdict: decide() };
    const decided = () => {
      attempt.decidedAt = this.now();
    };
    attempt.verdict.then(decided, decided);
    this.byJob.set(jobId, attempt);
    return { verdict: attempt.verdict, again: false };
  }

  /** The verdict is in Redis, or the attempt failed outright: a later copy starts afresh. */
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

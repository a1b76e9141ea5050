// Queue ids, and the job ids built on them: time-ordered so listings and logs sort by arrival,
// random enough that several daemons on one Redis never collide.
import { randomBytes } from 'node:crypto';

/** Random bytes drawn a few thousand at a time: one call per id costs more than the id itself. */
const POOL_SIZE = 5 * 1024;
let pool = Buffer.alloc(0);
let used = POOL_SIZE;

function random5(): string {
  if (used + 5 > pool.length) {
    pool = randomBytes(POOL_SIZE);
    used = 0;
  }
  used += 5;
  return pool.toString('hex', used - 5, used).toUpperCase();
}

export function newQueueId(now: number): string {
  return now.toString(36).toUpperCase().padStart(9, '0') + random5();
}

/** The arrival time a queue id (or a job or DSN id built on one) starts with; NaN for a foreign id. */
export function queueIdTime(id: string): number {
  return parseInt(id.slice(0, 9), 36);
}

/** A message's job for its `index`th destination domain. BullMQ job ids may not contain ':'; ids derived from the queue id make re-adds idempotent. */
export function jobIdFor(qid: string, index: number): string {
  return `${qid}-${index}`;
}

/** The queue id inside a job id (`<qid>-<n>`). */
export function qidOfJob(jobId: string): string {
  const dash = jobId.lastIndexOf('-');
  return dash > 0 ? jobId.slice(0, dash) : jobId;
}

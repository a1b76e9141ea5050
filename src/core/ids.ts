// Queue ids: time-ordered so `ls`-style listings and logs sort by arrival, random enough that
// several daemons on one Redis never collide.
import { randomBytes } from 'node:crypto';

export function newQueueId(now: number): string {
  return now.toString(36).toUpperCase().padStart(9, '0') + randomBytes(5).toString('hex').toUpperCase();
}

/** The arrival time a queue id (or a job or DSN id built on one) starts with; NaN for a foreign id. */
export function queueIdTime(id: string): number {
  return parseInt(id.slice(0, 9), 36);
}

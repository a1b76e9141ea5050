// Queue ids: time-ordered so `ls`-style listings and logs sort by arrival, random enough that
// several daemons on one Redis never collide.
import { randomBytes } from 'node:crypto';

export function newQueueId(now: number): string {
  return now.toString(36).toUpperCase().padStart(9, '0') + randomBytes(5).toString('hex').toUpperCase();
}

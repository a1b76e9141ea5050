// Makes delayed jobs due now with BullMQ's own promote script, one call per job and no fetch of
// the job first: an id whose job left the delayed set meanwhile (it came back on its own, was
// failed or finished) is refused by the script and simply not counted.
import { Job, type Queue } from 'bullmq';
import type { DeliveryJobData } from './job.js';

/** Promotes run this many at a time: pipelined on one connection without flooding it. */
const PROMOTE_BATCH = 500;

/** Returns how many of `ids` were moved from the delayed set to waiting. */
export async function promoteDelayed(queue: Queue<DeliveryJobData>, ids: readonly string[]): Promise<number> {
  let moved = 0;
  for (let i = 0; i < ids.length; i += PROMOTE_BATCH) {
    const results = await Promise.allSettled(ids.slice(i, i + PROMOTE_BATCH).map((id) => new Job(queue, 'promote', {} as DeliveryJobData, {}, id).promote()));
    moved += results.filter((r) => r.status === 'fulfilled').length;
  }
  return moved;
}

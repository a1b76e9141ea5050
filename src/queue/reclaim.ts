// A daemon on its own embedded Redis is the only one that can hold jobs in it (one daemon per data
// directory, a private socket): whatever is still claimed when it starts was held by a predecessor
// that died (kill -9, power loss). Those jobs go back to the queue at once. BullMQ's stalled check
// would find them only once their claims lapsed, between one and two job_lock_timeouts later. On an
// external Redis the claims may belong to other live daemons, so there the claims decide.
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { DeliveryJobData } from './job.js';

/** Over the queues of every shard. */
export async function returnOrphanedJobs(queues: ReadonlyArray<Queue<DeliveryJobData>>, log: Logger): Promise<void> {
  const orphans = (await Promise.all(queues.map((q) => q.getJobs(['active'])))).flat().filter((j) => j !== undefined);
  // Without a lock token, BullMQ moves the job whoever claimed it.
  await Promise.all(orphans.map((j) => j.moveToWait()));
  if (orphans.length > 0) {
    log.warn({ event: 'orphaned_jobs_returned', jobs: orphans.length }, 'jobs held by a daemon that died are back in the queue');
  }
}

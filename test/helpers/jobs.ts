// Reads the daemon's delivery jobs straight from its embedded Redis, so tests can check what is
// queued and when a deferred job is due without going through the daemon.
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { DELIVERY_QUEUE } from '../../src/queue/job.js';

export type QueuedJobState = 'delayed' | 'wait' | 'active' | 'prioritized' | 'waiting-children';
export type QueuedJob = { id: string; data: any; delayUntil?: number };

/** The embedded redis-server listens only on this socket inside redis.dir (see src/queue/embedded-redis.ts). */
export function embeddedRedisSocket(redisDir: string): string {
  return join(redisDir, 'redis.sock');
}

export async function readJobs(redisDir: string, states: QueuedJobState[], prefix = 'impulse'): Promise<QueuedJob[]> {
  const redis = new Redis({ path: embeddedRedisSocket(redisDir), maxRetriesPerRequest: null });
  const queue = new Queue(DELIVERY_QUEUE, { connection: redis, prefix });
  try {
    const jobs = (await queue.getJobs(states)).filter((j) => j !== undefined);
    // A deferral moves the job with moveToDelayed, which rewrites job.delay relative to that moment
    // but keeps the creation timestamp; the delayed set's score holds the real due time.
    const due = new Map<string, number>();
    if (states.includes('delayed')) {
      // RESP3 replies come as [member, score] pairs, RESP2 as one flat list.
      const flat = (await redis.zrange(queue.keys.delayed!, '0', '-1', 'WITHSCORES')).flat();
      for (let i = 0; i < flat.length; i += 2) due.set(flat[i]!, Math.floor(Number(flat[i + 1]) / 0x1000));
    }
    return jobs.map((j) => {
      const job: QueuedJob = { id: j.id!, data: j.data };
      const at = due.get(j.id!);
      if (at !== undefined) job.delayUntil = at;
      return job;
    });
  } finally {
    await queue.close();
    await redis.quit();
  }
}

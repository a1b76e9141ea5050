// BullMQ's Worker with its job locks kept for as long as this daemon really holds a job.
//
// Stock BullMQ renews a job's lock only once its processor is called, but the Worker first fetches
// up to `concurrency` jobs in a row before it calls any processor. With a window of thousands
// (max_active_messages) and a backlog in Redis, that fetch run can outlast job_lock_timeout: the
// first jobs' locks lapse unrenewed, the stalled check puts them back in the queue, and the Worker
// fetches them again while they are still held — one job held twice, "could not renew lock"
// errors, the same message sent twice. Here a lock is renewed from the moment its job is fetched.
//
// BullMQ also tracks locks by job id: when a job was handed out again anyway (its lock lapsed
// through a Redis outage longer than the lock), the older copy finishing untracks the newer
// copy's lock. The newest copy of each job is remembered so its renewal is restored.
//
// This reaches into Worker internals (nextJobFromJobData, processJob, lockManager), which is why
// package.json pins bullmq to one version: an upgrade must re-read worker.js and lock-manager.js.
import { type Job, type JobJson, Worker } from 'bullmq';
import type { DeliveryJobData } from './job.js';

type DeliveryJob = Job<DeliveryJobData, string | undefined>;

export class DeliveryWorker extends Worker<DeliveryJobData, string | undefined> {
  /** The newest copy fetched of each job this daemon is working on: the one holding its lock. */
  private readonly newest = new Map<string, DeliveryJob>();

  protected override async nextJobFromJobData(jobData?: JobJson, jobId?: string, token?: string): Promise<DeliveryJob> {
    const job = await super.nextJobFromJobData(jobData, jobId, token);
    if (job?.id && token) {
      this.newest.set(job.id, job);
      this.lockManager.trackJob(job.id, token, Date.now());
    }
    return job;
  }

  override async processJob(job: DeliveryJob, token: string, fetchNext?: () => boolean): Promise<void | DeliveryJob> {
    try {
      return await super.processJob(job, token, fetchNext);
    } finally {
      const newest = this.newest.get(job.id!);
      if (newest === job) this.newest.delete(job.id!);
      else if (newest?.token) this.lockManager.trackJob(job.id!, newest.token, this.renewalDue());
    }
  }

  /** Whether this copy of the job holds its lock, as far as this daemon knows: no newer copy was fetched. */
  holds(job: DeliveryJob): boolean {
    return this.newest.get(job.id!) === job;
  }

  /**
   * Stops renewing the job's lock before the write that gives the job back to Redis: a renewal
   * running after that write would fail and report a lock lost that was not.
   */
  stopRenewing(job: DeliveryJob): void {
    if (this.holds(job)) this.lockManager.untrackJob(job.id!);
  }

  /** A tracking timestamp that makes the next renewal round renew the lock. */
  private renewalDue(): number {
    return Date.now() - (this.opts.lockRenewTime ?? 0);
  }
}

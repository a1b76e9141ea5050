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
// copy's lock. The newest copy of each job is remembered, across all of the daemon's workers, so
// its renewal is restored and the older copy's stopped.
//
// Each worker fetches one job per Redis round trip, and with appendfsync always a round trip
// waits for Redis's fsync (1.5 to 7 ms seen): one worker fetched 150 to 800 jobs/s while intake
// took 1,000/s, so mail queued at start-up waited seconds for its first attempt. The consumer
// therefore runs several workers; in steady state most jobs come with the completion of the
// previous one (BullMQ's fetch-next), not from these fetches.
//
// BullMQ's main loop also fetches jobs one after another for as long as the queue has any, up to
// `concurrency`, before it hands the first of them to the processor: with mail arriving about as
// fast as it is fetched, jobs fetched at the start of such a run wait seconds for their attempt
// (3 to 6 s seen at 80% of the maximum rate). Each fetch here ends the run, as a delayed job
// due does in BullMQ itself, so the processor starts every job as soon as it is fetched.
//
// Every fetch, the Worker's own and the one BullMQ makes as a job is put back, waits while too
// many jobs are in transit (transit.ts); a job enters transit as it is fetched and leaves it when
// the scheduler holds it or its processor returns.
//
// This reaches into Worker internals (createJob, nextJobFromJobData, moveToActive, blockUntil, closing,
// processJob, lockManager), which is why package.json pins bullmq to one version: an upgrade must
// re-read worker.js and lock-manager.js.
import { type Job, type JobJson, Worker, type WorkerOptions } from 'bullmq';
import { type DeliveryJobData, JOB_OPTIONS } from './job.js';
import type { Transit } from './transit.js';

type DeliveryJob = Job<DeliveryJobData, void>;

/** The newest copy fetched of each job the daemon is working on, the one holding its lock, and its worker. */
export class JobCopies {
  readonly newest = new Map<string, { job: DeliveryJob; worker: DeliveryWorker }>();

  /** Whether this copy of the job holds its lock, as far as this daemon knows: no newer copy was fetched. */
  holds(job: DeliveryJob): boolean {
    return this.newest.get(job.id!)?.job === job;
  }
}

export class DeliveryWorker extends Worker<DeliveryJobData, void> {
  constructor(
    name: string,
    processor: (job: DeliveryJob, token?: string) => Promise<void>,
    opts: WorkerOptions,
    private readonly copies: JobCopies,
    private readonly transit: Transit,
  ) {
    super(name, async (job, token) => {
      try {
        await processor(job, token);
      } finally {
        transit.leave(job);
      }
    }, opts);
  }

  /** Each job as stored, with the options all delivery jobs share (JOB_OPTIONS), which are not stored. */
  protected override createJob(data: JobJson, jobId: string): DeliveryJob {
    const job = super.createJob(data, jobId);
    job.opts = { ...job.opts, ...JOB_OPTIONS };
    return job;
  }

  protected override async nextJobFromJobData(jobData?: JobJson, jobId?: string, token?: string): Promise<DeliveryJob> {
    const job = await super.nextJobFromJobData(jobData, jobId, token);
    if (job?.id && token) {
      const older = this.copies.newest.get(job.id);
      if (older && older.worker !== this) older.worker.lockManager.untrackJob(job.id);
      this.copies.newest.set(job.id, { job, worker: this });
      this.transit.enter(job);
      this.lockManager.trackJob(job.id, token, Date.now());
    }
    return job;
  }

  protected override async moveToActive(token: string, name?: string): Promise<DeliveryJob> {
    const room = this.transit.room();
    try {
      if (room) {
        // Set as BullMQ's blocking wait for a job sets it, so that the main loop starts no other
        // fetch and goes on handing the jobs it has to the processor: those leave transit.
        const self = this as unknown as { waiting: Promise<unknown> | null };
        self.waiting ??= room;
        try {
          await room;
        } finally {
          if (self.waiting === room) self.waiting = null;
        }
        // BullMQ takes no job once closing; it handles an empty fetch as an empty queue.
        if (this.closing) return undefined as unknown as DeliveryJob;
      }
      const job = await super.moveToActive(token, name);
      // The main loop's fetch run ends while blockUntil is set; the next fetch resets it.
      if (job) (this as unknown as { blockUntil: number }).blockUntil ||= 1;
      return job;
    } finally {
      this.transit.fetched();
    }
  }

  override async processJob(job: DeliveryJob, token: string, fetchNext?: () => boolean): Promise<void | DeliveryJob> {
    try {
      return await super.processJob(job, token, fetchNext);
    } finally {
      // Also a job BullMQ fails without calling the processor: a deferred failure, set by its
      // stalled check.
      this.transit.leave(job);
      const newest = this.copies.newest.get(job.id!);
      if (newest?.job === job) this.copies.newest.delete(job.id!);
      else if (newest?.worker === this && newest.job.token) this.lockManager.trackJob(job.id!, newest.job.token, this.renewalDue());
    }
  }

  /**
   * Stops renewing the job's lock before the write that gives the job back to Redis: a renewal
   * running after that write would fail and report a lock lost that was not.
   */
  stopRenewing(job: DeliveryJob): void {
    if (this.copies.holds(job)) this.lockManager.untrackJob(job.id!);
  }

  /** A tracking timestamp that makes the next renewal round renew the lock. */
  private renewalDue(): number {
    return Date.now() - (this.opts.lockRenewTime ?? 0);
  }
}

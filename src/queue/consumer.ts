// The BullMQ side of delivery: Workers take jobs, each job becomes a scheduler entry, and what the
// scheduler and the outcome path decide is written back to the job. A job never fails in BullMQ's
// sense: it completes when nothing is left to try, or waits in the delayed set for its next attempt.
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Bindings } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import { Lazy } from '../core/lazy.js';
import { TurnBatch } from '../core/turn-batch.js';
import type { Reply } from '../core/reply.js';
import { chargedAttempt } from '../outcome/attempt.js';
import type { Outcomes } from '../outcome/conclude.js';
import type { Entry, Outcome, Returning } from '../scheduler/entry.js';
import type { MessageStore } from '../store/message-store.js';
import { type RedisClient, isOutage } from '../store/redis.js';
import { AttemptLedger, type JobUpdate } from './attempt-ledger.js';
import { DeliveryWorker, JobCopies } from './delivery-worker.js';
import { DELIVERY_QUEUE, type DeliveryJobData } from './job.js';
import type { ShardQueue, Sharded } from './shards.js';
import { Transit } from './transit.js';

/** The scheduler as the consumer sees it. */
interface Admitter {
  admit(entry: Entry): void;
  /** Stops opening connections and parks held jobs. */
  close(): void;
}

interface ConsumerDeps {
  connection: RedisClient;
  /** Each shard's queue and store on `connection`: Workers take jobs from every shard. */
  shards: Sharded<ShardQueue>;
  concurrency: number;
  /** job_lock_timeout: a crashed daemon's jobs are back in the queue at most this long after it died. */
  jobLockTimeout: number;
  scheduler: Admitter;
  outcomes: Outcomes;
  bindings: Bindings;
  clock: Pick<Clock, 'now'>;
  log: Logger;
  /** How long a finished job's record is kept for operators; 0 keeps none. */
  historyRetention(): number;
}

/**
 * Workers fetching jobs side by side: each fetch is one round trip that waits for Redis's fsync
 * (see delivery-worker.ts), so one alone falls behind intake while nothing completes yet. Four
 * fell behind intake at 2,000 msg/s on two cores; sixteen spent more in empty fetches. With
 * shards they are shared out among them, and every shard has at least one.
 */
const FETCHERS = 8;

/**
 * Jobs in transit per shard beyond which its fetches wait. W4's intake of mail for a suspended
 * domain, every job fetched and parked, keeps 20 to 80 in transit; 256 of them cost a few MB at
 * most. Per shard, so that a slow shard holds up no other shard's fetches.
 */
const TRANSIT_MAX = 256;

/** High enough that no crash loop ever turns a stalled job into a failed one. */
const MAX_STALLED = 1_000_000;

/** An operator's failure waiting for a job to come off the queue. */
interface Doom {
  reply: Reply;
  quiet: boolean;
  at: number;
}

/** A doomed job that never came (delivered by a session already in flight, say) is forgotten after this. */
const DOOM_TTL_MS = 86_400_000;

/** BullMQ's wording for a renewal that failed, reported once per renewal round as `lock_lost` instead. */
const RENEWAL_FAILED = /^could not renew lock for job /;
/** BullMQ's wording for a write refused because the job's lock lapsed (the job is handed out again). */
const WRITE_REFUSED = /^Missing lock for job (\S+)\. (\w+)/;

/**
 * BullMQ's lock and stalled check within job_lock_timeout: a lock lapses at most its duration after
 * the daemon's last renewal (so after its death), and the next stalled check, run by any daemon,
 * puts the job back in the queue; three quarters plus a quarter keep the sum within the timeout.
 * BullMQ renews a lock every half of its duration.
 */
function lockTimes(jobLockTimeout: number): { lockDuration: number; stalledInterval: number } {
  const stalledInterval = Math.max(250, Math.round(jobLockTimeout / 4));
  return { lockDuration: Math.max(500, jobLockTimeout - stalledInterval), stalledInterval };
}

function returningOf(job: Job<DeliveryJobData, void>): Returning | undefined {
  if (job.data.waiting === 'retry') return { from: 'retry' };
  // A promoted job's delay is 0; one that came back on its park's fallback time keeps its delay.
  if (job.data.waiting === 'parked') return { from: 'park', promoted: !(job.delay > 0) };
  return undefined;
}

export class Consumer {
  private workers: DeliveryWorker[] = [];
  private readonly copies = new JobCopies();
  private readonly transits: Map<string, Transit>;
  /**
   * Each completed job's finished record, from its processor to its `completed` handler. BullMQ
   * would write a returned value into the completion's script call and its events stream, where
   * nothing reads it (the job itself is removed on completion): some 500 B per message.
   */
  private readonly records = new WeakMap<Job<DeliveryJobData, void>, string>();
  private readonly doomed = new Map<string, Doom>();
  private readonly ledger: AttemptLedger;
  /** Each shard's lock checks of one turn read in one MGET: its keys share the shard's slot. */
  private readonly lockReads: Map<string, TurnBatch<string, string | null>>;

  constructor(private readonly deps: ConsumerDeps) {
    this.ledger = new AttemptLedger(() => deps.clock.now());
    this.transits = new Map(deps.shards.all.map((part) => [part.shard.prefix, new Transit(TRANSIT_MAX)]));
    this.lockReads = new Map(deps.shards.all.map((part) => [part.shard.prefix, new TurnBatch((keys: string[]) => deps.connection.mget(...keys))]));
  }

  /**
   * The window (concurrency) is shared evenly by the shards, so held mail stays within
   * max_active_messages; a shard, and so any one domain, holds at most its share at once.
   */
  start(): void {
    const shards = this.deps.shards.all;
    const perShard = Math.max(1, Math.round(FETCHERS / shards.length));
    const concurrency = Math.ceil(this.deps.concurrency / (shards.length * perShard));
    this.workers = shards.flatMap((part) => Array.from({ length: perShard }, (_, i) => {
      const worker: DeliveryWorker = new DeliveryWorker(DELIVERY_QUEUE, (job, token) => this.process(worker, part, job, token), {
        connection: this.deps.connection,
        prefix: part.shard.prefix,
        concurrency,
        maxStalledCount: MAX_STALLED,
        ...lockTimes(this.deps.jobLockTimeout),
        // One stalled-job check serves the whole queue of a shard.
        skipStalledCheck: i > 0,
      }, this.copies, this.transits.get(part.shard.prefix)!);
      this.listen(worker, part.store);
      return worker;
    }));
  }

  private listen(worker: DeliveryWorker, store: MessageStore): void {
    const { log } = this.deps;
    worker.on('completed', (job) => {
      this.ledger.forget(job.id!);
      store.release(job.data.qid, job.id!, this.records.get(job), this.deps.historyRetention()).catch((err: Error) =>
        log.warn({ event: 'store_release_failed', qid: job.data.qid, err: err.message }, 'body kept until its TTL'));
    });
    worker.on('stalled', (jobId: string) =>
      log.info({ event: 'job_stalled', job_id: jobId }, 'job lock lapsed (its daemon died or stalled): back in the queue for any daemon'));
    worker.on('failed', (job, err) =>
      log.error({ event: 'job_error', qid: job?.data.qid, domain: job?.data.domain, err: err.message }, 'delivery job error; it will be retried'));
    const lockLost = 'job locks lapsed; those jobs are handed out again and their attempts are not made twice here';
    worker.on('lockRenewalFailed', (jobIds: string[]) => log.warn({ event: 'lock_lost', jobs: jobIds }, lockLost));
    worker.on('error', (err) => {
      // A lost connection is reported once, by the connection's watch, not at every reconnection attempt.
      if (isOutage(err) || RENEWAL_FAILED.test(err.message)) return;
      const refused = WRITE_REFUSED.exec(err.message);
      if (refused) log.warn({ event: 'lock_lost', jobs: [refused[1]], write: refused[2] }, lockLost);
      else log.error({ event: 'queue_error', err: err.message }, 'queue worker error');
    });
  }

  /** Jobs in transit over all shards. */
  get inTransit(): number {
    let n = 0;
    for (const transit of this.transits.values()) n += transit.size;
    return n;
  }

  /** Stops taking jobs and parks held ones; waits for sessions in flight unless forced (those are retried after restart). */
  async close(force = false): Promise<void> {
    const closing = Promise.all(this.workers.map((w) => w.close(force)));
    for (const transit of this.transits.values()) transit.open();
    this.deps.scheduler.close();
    await closing;
  }

  /**
   * Fails these jobs with `reply` as each comes off the queue (the caller makes them due now),
   * through the same path as any failed attempt: log, hooks, bounce unless quiet, history.
   */
  failOnArrival(jobIds: Iterable<string>, reply: Reply, quiet: boolean): void {
    const now = this.deps.clock.now();
    for (const [id, d] of this.doomed) if (now - d.at > DOOM_TTL_MS) this.doomed.delete(id);
    for (const id of jobIds) this.doomed.set(id, { reply, quiet, at: now });
  }

  /**
   * One attempt of the job, or the update of an attempt already made here for an earlier copy of
   * it (see attempt-ledger.ts), written to Redis by the copy that holds the job's lock.
   */
  private async process(worker: DeliveryWorker, part: ShardQueue, job: Job<DeliveryJobData, void>, token: string | undefined): Promise<void> {
    const { update, again } = this.ledger.join(job.id!, job.data, () => this.attempt(part, job));
    if (again) {
      this.deps.log.warn({ event: 'job_reclaimed', qid: job.data.qid, domain: job.data.domain, job_id: job.id, attempt: job.data.attempts + 1 },
        'job handed out again after its lock lapsed; recording the outcome of the attempt already made');
      // Its attempt is the earlier copy's, which the scheduler holds or which is in transit itself.
      this.transits.get(part.shard.prefix)!.leave(job);
    }
    let u: JobUpdate;
    try {
      u = await update;
    } catch (err) {
      if (this.copies.holds(job)) this.ledger.forget(job.id!);
      throw err;
    }
    // A newer copy took the lock: it writes the update, this one leaves Redis alone.
    if (!this.copies.holds(job)) throw new DelayedError();
    if (u.kind === 'abandon') {
      this.ledger.forget(job.id!);
      u.landed(false);
      this.deps.log.warn({ event: 'attempt_abandoned', qid: job.data.qid, domain: job.data.domain, job_id: job.id },
        'job lock held by another node before the transaction: attempt abandoned, nothing sent or written here');
      throw new DelayedError();
    }
    if (u.kind === 'complete') {
      u.landed(false);
      this.records.set(job, u.record);
      return;
    }
    await job.updateData(u.data);
    worker.stopRenewing(job);
    await job.moveToDelayed(u.until, token);
    this.ledger.forget(job.id!);
    u.landed(true);
    throw new DelayedError();
  }

  /**
   * Whether the job's lock in Redis is still the one this daemon's newest copy of the job took:
   * one key of an MGET. Another value means the lock lapsed and another node (or a later fetch) holds it.
   */
  private async holdsLock(prefix: string, job: Job<DeliveryJobData, void>): Promise<boolean> {
    const token = this.copies.newest.get(job.id!)?.job.token;
    if (token === undefined) return false;
    return (await this.lockReads.get(prefix)!.ask(`${prefix}:${DELIVERY_QUEUE}:${job.id!}:lock`)) === token;
  }

  /** Hands the job to the scheduler, and the attempt it gets to the outcome path; returns what to write to the job. */
  private async attempt(part: ShardQueue, job: Job<DeliveryJobData, void>): Promise<JobUpdate> {
    const data = job.data;
    const binding = this.deps.bindings.resolve({ binding: data.binding, group: data.bindingGroup }, data.qid);
    const body = new Lazy(() => part.store.get(data.qid));
    let landed!: (delayed: boolean) => void;
    const landing = new Promise<boolean>((resolve) => {
      landed = resolve;
    });
    const doom = this.doomed.get(job.id!);
    this.doomed.delete(job.id!);
    const outcome: Outcome = doom
      ? { kind: 'attempted', attempt: chargedAttempt(data.recipients, doom.reply, 'admin_fail', undefined, doom.quiet) }
      : await new Promise<Outcome>((resolve) => {
        let decided = false;
        this.deps.scheduler.admit({
          jobId: job.id!, qid: data.qid, domain: data.domain, binding, sender: data.sender, recipients: data.recipients,
          params: data, attempts: data.attempts, returning: returningOf(job), body, stillHeld: () => this.holdsLock(part.shard.prefix, job),
          resolve: (o) => {
            decided = true;
            resolve(o);
            return landing;
          },
        });
        // Not parked or bounced at once: the scheduler holds the job, and its window counts it from here.
        if (!decided) this.transits.get(part.shard.prefix)!.leave(job);
      });
    if (outcome.kind === 'abandoned') return { kind: 'abandon', landed };
    if (outcome.kind === 'parked') return { kind: 'delay', data: { ...data, waiting: 'parked' }, until: outcome.until, landed };
    const next = await this.deps.outcomes.conclude({
      jobId: job.id!, qid: data.qid, domain: data.domain, binding: binding.name, sender: data.sender, recipients: data.recipients,
      receivedAt: data.receivedAt, messageId: data.messageId, tenant: data.tenant, attempts: data.attempts, history: data.history ?? [],
      params: data, delayNotified: data.delayNotified ?? [],
    }, outcome.attempt, body);
    if (next.kind === 'finished') return { kind: 'complete', record: JSON.stringify(next.record), landed };
    return {
      kind: 'delay', until: next.at, landed,
      data: {
        ...data, recipients: next.recipients, attempts: next.attempts, waiting: 'retry', history: next.history,
        ...(next.delayNotified.length > 0 ? { delayNotified: next.delayNotified } : {}),
      },
    };
  }
}

// Takes delivery jobs from BullMQ, hands them to the scheduler, and records each outcome:
// log records, bounces, the next attempt. A job never fails in BullMQ's sense: it completes
// when nothing is left to try, or waits in the delayed set for its next attempt.
import { DelayedError, type Job, isNotConnectionError } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Bindings } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import { parseHeaders } from '../core/headers.js';
import { type Reply, formatReply } from '../core/reply.js';
import { buildDsn } from '../delivery/dsn.js';
import { flagNames } from '../delivery/flags.js';
import type { RetryPolicy } from '../delivery/retry.js';
import type { RecipientReply } from '../delivery/session.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { DeliveryResult, Outcome } from '../scheduler/entry.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { Attempts, type Verdict } from './attempts.js';
import { DeliveryWorker, JobCopies } from './delivery-worker.js';
import type { Enqueuer } from './enqueue.js';
import { DELIVERY_QUEUE, type DeliveryJobData, type FinishedRecord, HISTORY_LIMIT, type HistoryEntry } from './job.js';
import { settle } from './settle.js';
import type { ParkedJobs } from './parking.js';
import type { MessageStore } from './store.js';

export interface ConsumerDeps {
  connection: Redis;
  prefix: string;
  concurrency: number;
  /** BullMQ lock duration: a crashed daemon's jobs return to the queue this long after its last renewal. */
  lockDuration: number;
  store: MessageStore;
  parking: ParkedJobs;
  scheduler: Scheduler;
  enqueuer: Enqueuer;
  /** Retry schedule in force for a (binding, domain) pair. */
  policy: (binding: string, domain: string) => RetryPolicy;
  reportingMta: string;
  bindings: Bindings;
  hooks: HookRegistry;
  clock: Clock;
  log: Logger;
  /** How long a finished job's record is kept for operators; 0 keeps none. */
  historyRetention(): number;
  counter: OutcomeCounter;
}

/** Where outcomes are counted (the metrics); counts are recipients. */
export interface OutcomeCounter {
  delivered(binding: string, recipients: number, latencyMs: number): void;
  deferred(binding: string, status: string, recipients: number): void;
  failed(binding: string, status: string, recipients: number): void;
}

interface LogOutcome {
  event: 'delivery' | 'transient_failure' | 'permanent_failure';
  hook: 'log_delivery' | 'log_transient_failure' | 'log_permanent_failure';
  groups: ReplyGroup[];
  msg: string;
  extra?: Record<string, unknown>;
}

/**
 * Workers fetching jobs side by side: each fetch is one round trip that waits for Redis's fsync
 * (see delivery-worker.ts), so one alone falls behind intake while nothing completes yet. Four
 * fell behind intake at 2,000 msg/s on two cores; sixteen spent more in empty fetches.
 */
const FETCHERS = 8;

/** High enough that no crash loop ever turns a stalled job into a failed one. */
const MAX_STALLED = 1_000_000;

/** Recipients of one outcome sharing one reply: a log record, a hook call, a history entry each. */
interface ReplyGroup {
  reply: Reply;
  recipients: string[];
}

type Grouped = Record<'delivered' | 'deferred' | 'failed', ReplyGroup[]>;

function byReply(replies: RecipientReply[]): ReplyGroup[] {
  const groups = new Map<string, ReplyGroup>();
  for (const r of replies) {
    const key = formatReply(r.reply);
    const g = groups.get(key) ?? { reply: r.reply, recipients: [] };
    g.recipients.push(r.recipient);
    groups.set(key, g);
  }
  return [...groups.values()];
}

/** An operator's failure waiting for a job to come off the queue. */
interface Doom {
  reply: Reply;
  quiet: boolean;
  at: number;
}

/** A doomed job that never came (delivered by a session already in flight, say) is forgotten after this. */
const DOOM_TTL_MS = 86_400_000;

/** The history entries of one attempt: one per outcome and reply. */
function attemptEntries(grouped: Grouped, common: Omit<HistoryEntry, 'reply' | 'outcome'>): HistoryEntry[] {
  const groups = (['delivered', 'deferred', 'failed'] as const).flatMap((outcome) => grouped[outcome].map((g) => ({ outcome, ...g })));
  const mixed = groups.length > 1;
  return groups.map((g) => ({
    ...common, outcome: g.outcome, reply: formatReply(g.reply), ...(mixed ? { recipients: g.recipients } : {}),
  }));
}

function finishedRecord(jobId: string, data: DeliveryJobData, binding: string, history: HistoryEntry[], now: number): FinishedRecord {
  // Recipients finished at earlier attempts are no longer in the job's data, only in its history.
  const recipients = new Set(data.recipients);
  for (const h of history) for (const r of h.recipients ?? []) recipients.add(r);
  const delivered = history.some((h) => h.outcome === 'delivered');
  const failed = history.some((h) => h.outcome === 'failed');
  return {
    job_id: jobId, domain: data.domain, sender: data.sender, received_at: data.receivedAt, message_id: data.messageId,
    recipients: [...recipients], binding, state: failed ? (delivered ? 'partly_failed' : 'failed') : 'delivered',
    finished_at: new Date(now).toISOString(), attempts: history,
  };
}

/** BullMQ's wording for a renewal that failed, reported once per renewal round as `lock_lost` instead. */
const RENEWAL_FAILED = /^could not renew lock for job /;
/** BullMQ's wording for a write refused because the job's lock lapsed (the job is handed out again). */
const WRITE_REFUSED = /^Missing lock for job (\S+)\. (\w+)/;

export class Consumer {
  private workers: DeliveryWorker[] = [];
  private readonly copies = new JobCopies();
  private readonly doomed = new Map<string, Doom>();
  private readonly attempts: Attempts;

  constructor(private readonly deps: ConsumerDeps) {
    this.attempts = new Attempts(() => deps.clock.now());
  }

  start(): void {
    const concurrency = Math.ceil(this.deps.concurrency / FETCHERS);
    this.workers = Array.from({ length: FETCHERS }, (_, i) => {
      const worker: DeliveryWorker = new DeliveryWorker(DELIVERY_QUEUE, (job, token) => this.process(worker, job, token), {
        connection: this.deps.connection,
        prefix: this.deps.prefix,
        concurrency,
        maxStalledCount: MAX_STALLED,
        lockDuration: this.deps.lockDuration,
        stalledInterval: Math.max(1000, Math.round(this.deps.lockDuration / 2)),
        // One stalled-job check serves the whole queue.
        skipStalledCheck: i > 0,
      }, this.copies);
      this.listen(worker);
      return worker;
    });
  }

  private listen(worker: DeliveryWorker): void {
    const { log } = this.deps;
    worker.on('completed', (job, record: string | undefined) => {
      this.attempts.forget(job.id!);
      this.deps.store.release(job.data.qid, job.id!, record, this.deps.historyRetention()).catch((err: Error) =>
        log.warn({ event: 'store_release_failed', qid: job.data.qid, err: err.message }, 'body kept until its TTL'));
    });
    worker.on('failed', (job, err) =>
      log.error({ event: 'job_error', qid: job?.data.qid, domain: job?.data.domain, err: err.message }, 'delivery job error; it will be retried'));
    const lockLost = 'job locks lapsed; those jobs are handed out again and their attempts are not made twice here';
    worker.on('lockRenewalFailed', (jobIds: string[]) => log.warn({ event: 'lock_lost', jobs: jobIds }, lockLost));
    worker.on('error', (err) => {
      // A lost connection is reported once, by the connection's watch, not at every reconnection attempt.
      if (!isNotConnectionError(err) || RENEWAL_FAILED.test(err.message)) return;
      const refused = WRITE_REFUSED.exec(err.message);
      if (refused) log.warn({ event: 'lock_lost', jobs: [refused[1]], write: refused[2] }, lockLost);
      else log.error({ event: 'queue_error', err: err.message }, 'queue worker error');
    });
  }

  /** Stops taking jobs and parks held ones; waits for sessions in flight unless forced (those are retried after restart). */
  async close(force = false): Promise<void> {
    const closing = Promise.all(this.workers.map((w) => w.close(force)));
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
   * One attempt of the job, or the verdict of an attempt already made here for an earlier copy of
   * it (see attempts.ts), written to Redis by the copy that holds the job's lock.
   */
  private async process(worker: DeliveryWorker, job: Job<DeliveryJobData, string | undefined>, token: string | undefined): Promise<string | undefined> {
    const { verdict, again } = this.attempts.join(job.id!, job.data, () => this.decide(job));
    if (again) {
      this.deps.log.warn({ event: 'job_reclaimed', qid: job.data.qid, domain: job.data.domain, job_id: job.id, attempt: job.data.attempts + 1 },
        'job handed out again after its lock lapsed; recording the outcome of the attempt already made');
    }
    let v: Verdict;
    try {
      v = await verdict;
    } catch (err) {
      if (this.copies.holds(job)) this.attempts.forget(job.id!);
      throw err;
    }
    // A newer copy took the lock: it writes the verdict, this one leaves Redis alone.
    if (!this.copies.holds(job)) throw new DelayedError();
    if (v.kind === 'complete') return v.record;
    if (v.unpark) await this.deps.parking.remove(v.unpark, job.id!);
    await job.updateData(v.data);
    worker.stopRenewing(job);
    await job.moveToDelayed(v.until, token);
    this.attempts.forget(job.id!);
    // Logged only now, so an operator who sees it finds the job among the delayed.
    if (v.parked) {
      this.deps.log.debug({ event: 'parked', qid: job.data.qid, domain: job.data.domain, binding: v.parked.binding, reason: v.parked.reason, until: new Date(v.until).toISOString() }, 'parked');
    }
    if (v.parkedIn) {
      const { pair, filed } = v.parkedIn;
      await this.deps.parking.add(pair, job.id!, this.deps.clock.now()).then(filed, (err: Error) => this.deps.log.warn(
        { event: 'park_unfiled', qid: job.data.qid, job_id: job.id, err: err.message, until: new Date(v.until).toISOString() },
        'parked job not filed with its queue; it comes back at its fallback time'));
    }
    throw new DelayedError();
  }

  /** Runs the attempt and records it everywhere but in the job itself: logs, hooks, metrics, DSN. */
  private async decide(job: Job<DeliveryJobData, string | undefined>): Promise<Verdict> {
    const data = job.data;
    const { clock } = this.deps;
    const binding = this.deps.bindings.resolve({ binding: data.binding, group: data.bindingGroup }, data.qid);
    const doom = this.doomed.get(job.id!);
    this.doomed.delete(job.id!);
    const outcome = doom
      ? { kind: 'attempted' as const, result: { replies: data.recipients.map((recipient) => ({ recipient, reply: doom.reply })) }, action: 'admin_fail' as const, quiet: doom.quiet }
      : await new Promise<Outcome>((resolve) => this.deps.scheduler.admit({
        qid: data.qid, domain: data.domain, binding, sender: data.sender, recipients: data.recipients,
        attempts: data.attempts, returning: data.waiting, settle: resolve,
      }));
    if (outcome.kind === 'parked') {
      const parkedIn = outcome.filed ? { pair: { binding: binding.name, domain: data.domain }, filed: outcome.filed } : undefined;
      return { kind: 'delay', data: { ...data, waiting: 'parked' }, until: outcome.until, parkedIn, parked: { binding: binding.name, reason: outcome.reason } };
    }
    const { result, action, quiet } = outcome;
    const now = clock.now();
    const attempt = data.attempts + 1;
    const settled = settle(result.replies, now, data.receivedAt, attempt, this.deps.policy(binding.name, data.domain));
    const bounces = settled.failed.length > 0 && data.sender !== '' && !quiet;
    const wantsBody = bounces
      || this.deps.hooks.has('log_delivery') || this.deps.hooks.has('log_transient_failure') || this.deps.hooks.has('log_permanent_failure');
    const body = result.body ?? (wantsBody ? await this.deps.store.get(data.qid) : undefined);
    const common = {
      qid: data.qid, message_id: data.messageId, domain: data.domain, binding: binding.name, attempt,
      mx_host: result.target?.host, mx_ip: result.target?.address,
      age_s: Math.round((now - data.receivedAt) / 1000),
      ...(action ? { action } : {}),
      ...(result.flags !== undefined ? { flags: flagNames(result.flags) } : {}),
    };
    const grouped: Grouped = { delivered: byReply(settled.delivered), deferred: byReply(settled.deferred), failed: byReply(settled.failed) };
    this.record(data, body, common, [
      { event: 'delivery', hook: 'log_delivery', groups: grouped.delivered, msg: 'delivered' },
      { event: 'transient_failure', hook: 'log_transient_failure', groups: grouped.deferred, msg: 'deferred',
        extra: settled.retryAt === undefined ? {} : { next_attempt: new Date(settled.retryAt).toISOString() } },
      { event: 'permanent_failure', hook: 'log_permanent_failure', groups: grouped.failed, msg: 'failed' },
    ], now);

    this.count(binding.name, grouped, now - data.receivedAt);
    if (bounces) await this.bounce(job, data, body, settled.failed, result, now, attempt);
    const entries = attemptEntries(grouped, {
      at: new Date(now).toISOString(), attempt, binding: binding.name,
      ...(action ? { action } : {}),
      ...(result.flags !== undefined ? { flags: flagNames(result.flags) } : {}),
      ...(result.target ? { mx_host: result.target.host, mx_ip: result.target.address } : {}),
    });
    const history = [...(data.history ?? []), ...entries].slice(-HISTORY_LIMIT);
    if (settled.deferred.length > 0) {
      this.deps.scheduler.noteDeferred(data.domain);
      // A promoted job's delay is 0; one that came back on its park's fallback may still be filed
      // with its pair, and a promotion must not cut its retry short.
      const unpark = data.waiting === 'parked' && job.delay > 0 ? { binding: binding.name, domain: data.domain } : undefined;
      return {
        kind: 'delay', until: settled.retryAt!, unpark,
        data: { ...data, recipients: settled.deferred.map((r) => r.recipient), attempts: attempt, waiting: 'retry', history },
      };
    }
    return { kind: 'complete', record: JSON.stringify(finishedRecord(job.id!, data, binding.name, history, now)) };
  }

  private count(binding: string, grouped: Grouped, latencyMs: number): void {
    const { counter } = this.deps;
    for (const g of grouped.delivered) counter.delivered(binding, g.recipients.length, latencyMs);
    for (const g of grouped.deferred) counter.deferred(binding, g.reply.enhanced, g.recipients.length);
    for (const g of grouped.failed) counter.failed(binding, g.reply.enhanced, g.recipients.length);
  }

  /** One log record and one outcome hook call per group of recipients sharing a reply. */
  private record(data: DeliveryJobData, body: Buffer | undefined, common: Record<string, unknown>, outcomes: LogOutcome[], now: number): void {
    const { hooks, log } = this.deps;
    let headers: Map<string, string> | undefined;
    for (const o of outcomes) {
      const withHook = hooks.has(o.hook);
      for (const g of o.groups) {
        const note = formatReply(g.reply);
        if (log.isLevelEnabled('info')) log.info({ event: o.event, ...common, recipients: g.recipients, reply: note, ...o.extra }, o.msg);
        if (!withHook) continue;
        headers ??= body ? parseHeaders(body) : new Map<string, string>();
        hooks.fire(o.hook, { qid: data.qid, sender: data.sender, recipients: g.recipients, headers }, data.domain, now, note);
      }
    }
  }

  private async bounce(job: Job<DeliveryJobData, string | undefined>, data: DeliveryJobData, original: Buffer | undefined,
    failed: RecipientReply[], result: DeliveryResult, now: number, attempt: number): Promise<void> {
    const remoteMta = result.target?.host;
    const body = buildDsn({
      reportingMta: this.deps.reportingMta, originalSender: data.sender, queueId: data.qid, arrival: data.receivedAt,
      originalMessage: original, now,
      failures: failed.map((f) => ({ recipient: f.recipient, reply: f.reply, remoteMta: f.reply.text.startsWith('[internal]') ? undefined : remoteMta })),
    });
    // Derived from the job and attempt, so a job re-run after a crash re-adds the same DSN job.
    const qid = `${job.id}.B${attempt}`;
    await this.deps.enqueuer.enqueue({ qid, sender: '', recipients: [data.sender], body, receivedAt: now });
    this.deps.log.info({ event: 'bounce_queued', qid: data.qid, dsn_qid: qid, to: data.sender, recipients: failed.map((f) => f.recipient) }, 'DSN queued');
  }
}

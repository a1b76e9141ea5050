// Takes delivery jobs from BullMQ, hands them to the scheduler, and records each outcome:
// log records, bounces, the next attempt. A job never fails in BullMQ's sense: it completes
// when nothing is left to try, or waits in the delayed set for its next attempt.
import { DelayedError, type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Bindings } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import { parseHeaders } from '../core/headers.js';
import { type Reply, formatReply, reply } from '../core/reply.js';
import type { DeliveryResult } from '../delivery/deliverer.js';
import { buildDsn } from '../delivery/dsn.js';
import type { RetryPolicy } from '../delivery/retry.js';
import type { RecipientReply } from '../delivery/session.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { Enqueuer } from './enqueue.js';
import { DELIVERY_QUEUE, type DeliveryJobData } from './job.js';
import { settle } from './settle.js';
import type { MessageStore } from './store.js';

export interface ConsumerDeps {
  connection: Redis;
  prefix: string;
  concurrency: number;
  store: MessageStore;
  scheduler: Scheduler;
  enqueuer: Enqueuer;
  /** Retry schedule in force for a (binding, domain) pair. */
  policy: (binding: string, domain: string) => RetryPolicy;
  reportingMta: string;
  bindings: Bindings;
  hooks: HookRegistry;
  clock: Clock;
  log: Logger;
}

interface Outcome {
  event: 'delivery' | 'transient_failure' | 'permanent_failure';
  hook: 'log_delivery' | 'log_transient_failure' | 'log_permanent_failure';
  replies: RecipientReply[];
  msg: string;
  extra?: Record<string, unknown>;
}

/** High enough that no crash loop ever turns a stalled job into a failed one. */
const MAX_STALLED = 1_000_000;

function byReply(replies: RecipientReply[]): Array<{ reply: Reply; recipients: string[] }> {
  const groups = new Map<string, { reply: Reply; recipients: string[] }>();
  for (const r of replies) {
    const key = formatReply(r.reply);
    const g = groups.get(key) ?? { reply: r.reply, recipients: [] };
    g.recipients.push(r.recipient);
    groups.set(key, g);
  }
  return [...groups.values()];
}

export class Consumer {
  private worker: Worker<DeliveryJobData> | undefined;

  constructor(private readonly deps: ConsumerDeps) {}

  start(): void {
    this.worker = new Worker<DeliveryJobData>(DELIVERY_QUEUE, (job, token) => this.process(job, token), {
      connection: this.deps.connection,
      prefix: this.deps.prefix,
      concurrency: this.deps.concurrency,
      maxStalledCount: MAX_STALLED,
      lockDuration: 60_000,
    });
    this.worker.on('completed', (job) => {
      this.deps.store.release(job.data.qid, job.id!).catch((err: Error) =>
        this.deps.log.warn({ event: 'store_release_failed', qid: job.data.qid, err: err.message }, 'body kept until its TTL'));
    });
    this.worker.on('failed', (job, err) =>
      this.deps.log.error({ event: 'job_error', qid: job?.data.qid, domain: job?.data.domain, err: err.message }, 'delivery job error; it will be retried'));
    this.worker.on('error', (err) => this.deps.log.error({ event: 'queue_error', err: err.message }, 'queue worker error'));
  }

  /** Stops taking jobs; waits for jobs in flight unless forced (those are retried after restart). */
  async close(force = false): Promise<void> {
    await this.worker?.close(force);
  }

  private async process(job: Job<DeliveryJobData>, token: string | undefined): Promise<void> {
    const data = job.data;
    const { clock } = this.deps;
    const stored = await this.deps.store.get(data.qid);
    const binding = this.deps.bindings.resolve({ binding: data.binding, group: data.bindingGroup }, data.qid);
    const result: DeliveryResult = stored
      ? await this.deps.scheduler.deliver({ domain: data.domain, binding, sender: data.sender, recipients: data.recipients, body: stored.body })
      : { replies: data.recipients.map((recipient) => ({ recipient, reply: reply(554, '5.3.0', '[internal] message body missing from the store') })) };
    const now = clock.now();
    const attempt = data.attempts + 1;
    const outcome = settle(result.replies, now, data.receivedAt, attempt, this.deps.policy(binding.name, data.domain));
    const common = {
      qid: data.qid, message_id: data.messageId, domain: data.domain, binding: binding.name, attempt,
      mx_host: result.target?.host, mx_ip: result.target?.address,
      age_s: Math.round((now - data.receivedAt) / 1000),
    };
    this.record(data, stored?.body, common, [
      { event: 'delivery', hook: 'log_delivery', replies: outcome.delivered, msg: 'delivered' },
      { event: 'transient_failure', hook: 'log_transient_failure', replies: outcome.deferred, msg: 'deferred',
        extra: outcome.retryAt === undefined ? {} : { next_attempt: new Date(outcome.retryAt).toISOString() } },
      { event: 'permanent_failure', hook: 'log_permanent_failure', replies: outcome.failed, msg: 'failed' },
    ], now);

    if (outcome.failed.length > 0 && data.sender !== '') await this.bounce(job, data, stored?.body, outcome.failed, result, now, attempt);
    if (outcome.deferred.length > 0) {
      await job.updateData({ ...data, recipients: outcome.deferred.map((r) => r.recipient), attempts: attempt });
      await job.moveToDelayed(outcome.retryAt!, token);
      throw new DelayedError();
    }
  }

  /** One log record and one outcome hook call per group of recipients sharing a reply. */
  private record(data: DeliveryJobData, body: Buffer | undefined, common: Record<string, unknown>, outcomes: Outcome[], now: number): void {
    const { hooks, log } = this.deps;
    let headers: Map<string, string> | undefined;
    for (const o of outcomes) {
      const withHook = hooks.has(o.hook);
      for (const g of byReply(o.replies)) {
        const note = formatReply(g.reply);
        log.info({ event: o.event, ...common, recipients: g.recipients, reply: note, ...o.extra }, o.msg);
        if (!withHook) continue;
        headers ??= body ? parseHeaders(body) : new Map<string, string>();
        hooks.fire(o.hook, { qid: data.qid, sender: data.sender, recipients: g.recipients, headers }, data.domain, now, note);
      }
    }
  }

  private async bounce(job: Job<DeliveryJobData>, data: DeliveryJobData, original: Buffer | undefined,
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

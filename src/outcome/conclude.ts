// What follows an attempt: its recipients settled, one record of it (logs, hooks, metrics), a DSN
// to the sender for those failed, the message's history, and the job's next step.
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Lazy } from '../core/lazy.js';
import { flagNames } from '../delivery/flags.js';
import type { RecipientReply } from '../delivery/session.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { Attempt } from './attempt.js';
import { buildDsn } from './dsn.js';
import { type FinishedRecord, HISTORY_LIMIT, type HistoryEntry, attemptEntries, finishedRecord } from './history.js';
import { type Grouped, OUTCOME_HOOKS, type OutcomeCounter, byReply, recordAttempt } from './record.js';
import type { RetryPolicy } from './retry.js';
import { settle } from './settle.js';

/** The job an attempt was made for, as the outcome path needs it. */
interface AttemptedJob {
  jobId: string;
  qid: string;
  domain: string;
  /** The binding the attempt left from. */
  binding: string;
  sender: string;
  /** Recipients still undelivered before this attempt. */
  recipients: readonly string[];
  receivedAt: number;
  messageId?: string | undefined;
  /** Attempts made before this one. */
  attempts: number;
  history: readonly HistoryEntry[];
}

type Conclusion =
  | { kind: 'finished'; record: FinishedRecord }
  | { kind: 'retry'; at: number; recipients: string[]; attempts: number; history: HistoryEntry[] };

interface OutcomesDeps {
  clock: Pick<Clock, 'now'>;
  log: Logger;
  hooks: HookRegistry;
  counter: OutcomeCounter;
  retryPolicy(binding: string, domain: string): RetryPolicy;
  /** The MTA name DSNs report from. */
  reportingMta: string;
  /** Queues a DSN as a message of its own from the null sender. */
  queueBounce(bounce: { qid: string; to: string; body: Buffer; now: number }): Promise<void>;
}

export class Outcomes {
  constructor(private readonly deps: OutcomesDeps) {}

  async conclude(job: AttemptedJob, attempt: Attempt, body: Lazy<Buffer | undefined>): Promise<Conclusion> {
    const { clock, hooks } = this.deps;
    const now = clock.now();
    const n = job.attempts + 1;
    const settled = settle(attempt.replies, now, job.receivedAt, n, this.deps.retryPolicy(job.binding, job.domain));
    const bounces = settled.failed.length > 0 && job.sender !== '' && !attempt.quiet;
    const wantsBody = bounces || OUTCOME_HOOKS.some((h) => hooks.has(h));
    const original = wantsBody ? await body.get() : undefined;
    const flags = attempt.flags !== undefined ? { flags: flagNames(attempt.flags) } : {};
    const action = attempt.action ? { action: attempt.action } : {};
    const grouped: Grouped = { delivered: byReply(settled.delivered), deferred: byReply(settled.deferred), failed: byReply(settled.failed) };
    recordAttempt(this.deps, job, grouped, {
      qid: job.qid, message_id: job.messageId, domain: job.domain, binding: job.binding, attempt: n,
      mx_host: attempt.target?.host, mx_ip: attempt.target?.address, age_s: Math.round((now - job.receivedAt) / 1000), ...action, ...flags,
    }, settled.retryAt, original, now);
    if (bounces) await this.bounce(job, original, settled.failed, attempt, now, n);
    const entries = attemptEntries(grouped, {
      at: new Date(now).toISOString(), attempt: n, binding: job.binding, ...action, ...flags,
      ...(attempt.target ? { mx_host: attempt.target.host, mx_ip: attempt.target.address } : {}),
    });
    const history = [...job.history, ...entries].slice(-HISTORY_LIMIT);
    if (settled.deferred.length > 0) {
      return { kind: 'retry', at: settled.retryAt!, recipients: settled.deferred.map((r) => r.recipient), attempts: n, history };
    }
    return { kind: 'finished', record: finishedRecord(job, history, now) };
  }

  private async bounce(job: AttemptedJob, original: Buffer | undefined, failed: RecipientReply[], attempt: Attempt, now: number, n: number): Promise<void> {
    const remoteMta = attempt.target?.host;
    const { body } = buildDsn({
      reportingMta: this.deps.reportingMta, originalSender: job.sender, queueId: job.qid, arrival: job.receivedAt,
      originalMessage: original, now, ret: 'HDRS', maxReturnSize: 50_000, utf8: false,
      recipients: failed.map((f) => ({
        recipient: f.recipient, action: 'failed', reply: f.reply, remoteMta: f.reply.text.startsWith('[internal]') ? undefined : remoteMta,
      })),
    });
    // Derived from the job and attempt, so a job re-run after a crash re-adds the same DSN job.
    const qid = `${job.jobId}.B${n}`;
    await this.deps.queueBounce({ qid, to: job.sender, body, now });
    this.deps.log.info({ event: 'bounce_queued', qid: job.qid, dsn_qid: qid, to: job.sender, recipients: failed.map((f) => f.recipient) }, 'DSN queued');
  }
}

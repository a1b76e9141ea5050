// What follows an attempt: its recipients settled, one record of it (logs, hooks, metrics), one
// DSN to the sender for the recipients whose NOTIFY asks for one, the message's history, and the
// job's next step.
import type { Logger } from 'pino';
import type { BounceClass } from '../bounce/classes.js';
import type { Clock } from '../core/clock.js';
import type { Lazy } from '../core/lazy.js';
import type { Reply } from '../core/reply.js';
import type { EnvelopeParams, Notify } from '../delivery/envelope.js';
import { flagNames } from '../delivery/flags.js';
import type { RecipientReply } from '../delivery/session.js';
import type { HookRegistry } from '../hooks/registry.js';
import { type RecordFeed, logEvent } from '../webhooks/feed.js';
import type { Attempt } from './attempt.js';
import { type DsnRecipient, buildDsn } from './dsn.js';
import { type FinishedRecord, HISTORY_LIMIT, type HistoryEntry, attemptEntries, finishedRecord } from './history.js';
import { type Grouped, OUTCOME_HOOKS, type OutcomeCounter, byReply, recordAttempt } from './record.js';
import type { RetryPolicy } from './retry.js';
import { type Settlement, settle } from './settle.js';

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
  /** The sender's tenant (X-Impulse-Tenant at intake), in every record of the message. */
  tenant?: string | undefined;
  /** Attempts made before this one. */
  attempts: number;
  history: readonly HistoryEntry[];
  params: EnvelopeParams;
  /** Recipients already sent a delay DSN. */
  delayNotified: readonly string[];
}

type Conclusion =
  | { kind: 'finished'; record: FinishedRecord }
  | { kind: 'retry'; at: number; recipients: string[]; attempts: number; history: HistoryEntry[]; delayNotified: string[] };

/** A DSN ready to be queued as a message of its own, from the null sender. */
interface QueuedDsn {
  qid: string;
  to: string;
  body: Buffer;
  now: number;
  eightBit: boolean;
  smtputf8: boolean;
  /** The tenant of the message it reports on: a DSN's own records carry it too. */
  tenant?: string | undefined;
}

interface OutcomesDeps {
  clock: Pick<Clock, 'now'>;
  log: Logger;
  hooks: HookRegistry;
  counter: OutcomeCounter;
  /** The webhooks' records of outcomes and of DSNs queued. */
  feed: RecordFeed;
  /** The bounce class of a deferral's or failure's reply, under the rules in force. */
  bounceClass(reply: Reply): BounceClass;
  retryPolicy(binding: string, domain: string): RetryPolicy;
  /** The MTA name DSNs report from. */
  reportingMta: string;
  /** dsn_max_return_size: RET=FULL returns the whole message only up to this size. */
  maxReturnSize(): number;
  /** delay_dsn_after: a deferred recipient's sender hears of it once mail has waited this long; 0 never. */
  delayDsnAfter(): number;
  queueDsn(dsn: QueuedDsn): Promise<void>;
}

/** RFC 3461 4.1: without NOTIFY, a DSN for failure and delay, never for success. */
function asks(notify: readonly Notify[] | undefined, what: Notify): boolean {
  return notify === undefined ? what !== 'SUCCESS' : notify.includes(what);
}

export class Outcomes {
  constructor(private readonly deps: OutcomesDeps) {}

  async conclude(job: AttemptedJob, attempt: Attempt, body: Lazy<Buffer | undefined>): Promise<Conclusion> {
    const { clock, hooks } = this.deps;
    const now = clock.now();
    const n = job.attempts + 1;
    const policy = this.deps.retryPolicy(job.binding, job.domain);
    const settled = settle(attempt.replies, now, job.receivedAt, n, policy);
    const reported = this.reported(job, attempt, settled, now, job.receivedAt + policy.messageExpiration);
    const wantsBody = reported.length > 0 || OUTCOME_HOOKS.some((h) => hooks.has(h));
    const original = wantsBody ? await body.get() : undefined;
    const flags = attempt.flags !== undefined ? { flags: flagNames(attempt.flags) } : {};
    const action = attempt.action ? { action: attempt.action } : {};
    const classified = (replies: RecipientReply[]) => byReply(replies).map((g) => ({ ...g, bounceClass: this.deps.bounceClass(g.reply) }));
    const grouped: Grouped = { delivered: byReply(settled.delivered), deferred: classified(settled.deferred), failed: classified(settled.failed) };
    recordAttempt(this.deps, job, grouped, {
      qid: job.qid, message_id: job.messageId, tenant: job.tenant, domain: job.domain, binding: job.binding, attempt: n,
      mx_host: attempt.target?.host, mx_ip: attempt.target?.address, age_s: Math.round((now - job.receivedAt) / 1000), ...action, ...flags,
    }, settled.retryAt, original, now);
    if (reported.length > 0) await this.report(job, original, reported, now, n);
    const entries = attemptEntries(grouped, {
      at: new Date(now).toISOString(), attempt: n, binding: job.binding, ...action, ...flags,
      ...(attempt.target ? { mx_host: attempt.target.host, mx_ip: attempt.target.address } : {}),
    });
    const history = [...job.history, ...entries].slice(-HISTORY_LIMIT);
    if (settled.deferred.length > 0) {
      const delayNotified = [...job.delayNotified, ...reported.filter((r) => r.action === 'delayed').map((r) => r.recipient)];
      return { kind: 'retry', at: settled.retryAt!, recipients: settled.deferred.map((r) => r.recipient), attempts: n, history, delayNotified };
    }
    return { kind: 'finished', record: finishedRecord(job, history, now) };
  }

  /**
   * The recipients the sender hears of, by their NOTIFY (RFC 3461 4.1, 5.2): failures unless an
   * operator failed them quietly; relayed successes when the server that took them does not
   * report delivery itself (5.2.2); deferrals once mail has waited delay_dsn_after, once each.
   */
  private reported(job: AttemptedJob, attempt: Attempt, settled: Settlement, now: number, expiry: number): DsnRecipient[] {
    if (job.sender === '') return [];
    const dsn = job.params.dsn;
    const out: DsnRecipient[] = [];
    const add = (recipient: string, action: DsnRecipient['action'], reply: Reply, extra: Partial<DsnRecipient> = {}) => {
      const orcpt = dsn?.[recipient]?.orcpt;
      const remote = reply.text.startsWith('[internal]') ? undefined : attempt.target?.host;
      out.push({ recipient, action, reply, ...(remote ? { remoteMta: remote } : {}), ...(orcpt ? { originalRecipient: orcpt } : {}), ...extra });
    };
    if (!attempt.quiet) for (const f of settled.failed) if (asks(dsn?.[f.recipient]?.notify, 'FAILURE')) add(f.recipient, 'failed', f.reply);
    if (!attempt.hopOffersDsn) for (const d of settled.delivered) if (asks(dsn?.[d.recipient]?.notify, 'SUCCESS')) add(d.recipient, 'relayed', d.reply);
    const after = this.deps.delayDsnAfter();
    if (after > 0 && now - job.receivedAt >= after) {
      for (const d of settled.deferred) {
        if (job.delayNotified.includes(d.recipient) || !asks(dsn?.[d.recipient]?.notify, 'DELAY')) continue;
        add(d.recipient, 'delayed', d.reply, { willRetryUntil: expiry });
      }
    }
    return out;
  }

  private async report(job: AttemptedJob, original: Buffer | undefined, recipients: DsnRecipient[], now: number, n: number): Promise<void> {
    const p = job.params;
    const dsn = buildDsn({
      reportingMta: this.deps.reportingMta, originalSender: job.sender, queueId: job.qid, arrival: job.receivedAt, now,
      envid: p.envid, ret: p.ret ?? 'HDRS', maxReturnSize: this.deps.maxReturnSize(), utf8: p.smtputf8 === true,
      originalMessage: original, recipients,
    });
    // Derived from the job and attempt, so a job re-run after a crash re-adds the same DSN job.
    const qid = `${job.jobId}.B${n}`;
    await this.deps.queueDsn({ qid, to: job.sender, body: dsn.body, now, eightBit: dsn.eightBit, smtputf8: dsn.utf8, tenant: job.tenant });
    logEvent(this.deps.log, this.deps.feed, 'bounce_queued', 'DSN queued', () => ({
      qid: job.qid, tenant: job.tenant, dsn_qid: qid, to: job.sender, recipients: recipients.map((r) => r.recipient),
      actions: [...new Set(recipients.map((r) => r.action))],
    }));
  }
}

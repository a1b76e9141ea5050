// A message's history: one entry per outcome of each attempt, carried in the job while it is
// queued, and the record kept for operators once the job is finished.
import type { BounceClass } from '../bounce/classes.js';
import { formatReply } from '../core/reply.js';
import type { Grouped } from './record.js';

/** One outcome of one attempt (several when an attempt's recipients got different replies). */
export interface HistoryEntry {
  at: string;
  attempt: number;
  /** Absent in entries written before outcomes were recorded: those were deferrals. */
  outcome?: 'delivered' | 'deferred' | 'failed' | undefined;
  reply: string;
  /** The reply's bounce class, for deferred and failed outcomes; absent in entries written before classes were recorded. */
  bounce_class?: BounceClass | undefined;
  /** Listed only when the attempt's recipients had different outcomes. */
  recipients?: string[] | undefined;
  /** Set when the attempt was charged by a domain-wide or operator action rather than a transaction of its own. */
  action?: string | undefined;
  flags?: string[] | undefined;
  mx_host?: string | undefined;
  mx_ip?: string | undefined;
  binding?: string | undefined;
}

/** What stays of a finished job for `message_history_retention`, once its data and body are gone. */
export interface FinishedRecord {
  job_id: string;
  domain: string;
  sender: string;
  received_at: number;
  message_id?: string | undefined;
  /** Every recipient of the job, delivered or not. */
  recipients: string[];
  binding?: string | undefined;
  state: 'delivered' | 'failed' | 'partly_failed';
  finished_at: string;
  attempts: HistoryEntry[];
}

/** History entries kept per job: enough to explain its retries, bounded for a message retried for days. */
export const HISTORY_LIMIT = 20;

/** The history entries of one attempt: one per outcome and reply. */
export function attemptEntries(grouped: Grouped, common: Omit<HistoryEntry, 'reply' | 'outcome' | 'bounce_class'>): HistoryEntry[] {
  const groups = (['delivered', 'deferred', 'failed'] as const).flatMap((outcome) => grouped[outcome].map((g) => ({ outcome, ...g })));
  const mixed = groups.length > 1;
  return groups.map((g) => ({
    ...common, outcome: g.outcome, reply: formatReply(g.reply), ...('bounceClass' in g ? { bounce_class: g.bounceClass } : {}),
    ...(mixed ? { recipients: g.recipients } : {}),
  }));
}

/** The job as its finished record names it. */
interface FinishedJob {
  jobId: string;
  domain: string;
  sender: string;
  receivedAt: number;
  messageId?: string | undefined;
  /** Recipients still undelivered before the last attempt. */
  recipients: readonly string[];
  binding: string;
}

export function finishedRecord(job: FinishedJob, history: HistoryEntry[], now: number): FinishedRecord {
  // Recipients finished at earlier attempts are no longer in the job's data, only in its history.
  const recipients = new Set(job.recipients);
  for (const h of history) for (const r of h.recipients ?? []) recipients.add(r);
  const delivered = history.some((h) => h.outcome === 'delivered');
  const failed = history.some((h) => h.outcome === 'failed');
  return {
    job_id: job.jobId, domain: job.domain, sender: job.sender, received_at: job.receivedAt, message_id: job.messageId,
    recipients: [...recipients], binding: job.binding, state: failed ? (delivered ? 'partly_failed' : 'failed') : 'delivered',
    finished_at: new Date(now).toISOString(), attempts: history,
  };
}

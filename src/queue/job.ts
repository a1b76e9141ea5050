// What a delivery job carries: one message's recipients at one destination domain. The body
// lives once in the message store; jobs only name it.
import { domainToASCII } from 'node:url';
import type { EnvelopeParams } from '../delivery/envelope.js';
import type { HistoryEntry } from '../outcome/history.js';

export const DELIVERY_QUEUE = 'delivery';

/** A job that throws unexpectedly is retried at this pace instead of being failed. */
const JOB_ERROR_RETRY_MS = 60_000;

/**
 * BullMQ options every delivery job runs with. They are not stored with each job (some 110 bytes
 * of Redis per queued message): the consumer's Workers give them to every job they fetch.
 */
export const JOB_OPTIONS = {
  removeOnComplete: true,
  removeOnFail: false,
  attempts: Number.MAX_SAFE_INTEGER,
  backoff: { type: 'fixed', delay: JOB_ERROR_RETRY_MS },
} as const;

/** ESMTP parameters (EnvelopeParams) are kept only when the client gave them, so most jobs carry none. */
export interface DeliveryJobData extends EnvelopeParams {
  qid: string;
  domain: string;
  sender: string;
  /** Recipients of this domain still undelivered. */
  recipients: string[];
  receivedAt: number;
  /** Attempts made so far; BullMQ's own counter is not used because deferrals skip it. */
  attempts: number;
  messageId?: string | undefined;
  /** The sender's tenant, from X-Impulse-Tenant at intake; kept only when given. */
  tenant?: string | undefined;
  /** Binding assigned at intake; or the group, resolved to a binding at each attempt. */
  binding?: string | undefined;
  bindingGroup?: string | undefined;
  /** Why the job is in the delayed set: its next attempt, or parked while its queue had no room. */
  waiting?: 'retry' | 'parked' | undefined;
  /** The most recent attempts that ended in a deferral, oldest first. */
  history?: HistoryEntry[] | undefined;
  /** Recipients a delay DSN was sent for (delay_dsn_after): at most one each. */
  delayNotified?: string[] | undefined;
}

/**
 * The destination domain of an address, as DNS knows it: lower case, and an internationalised
 * (UTF-8) domain in its ASCII form (RFC 5891), so its MX can be looked up.
 */
export function domainOf(address: string): string {
  const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  return /^[\x00-\x7f]*$/.test(domain) ? domain : domainToASCII(domain) || domain;
}

/** Recipients by destination domain, in first-seen order: one job each. */
export function recipientsByDomain(recipients: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of recipients) {
    const d = domainOf(r);
    const list = out.get(d);
    if (list) list.push(r);
    else out.set(d, [r]);
  }
  return out;
}

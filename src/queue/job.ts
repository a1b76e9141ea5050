// What a delivery job carries: one message's recipients at one destination domain. The body
// lives once in the message store; jobs only name it.

export const DELIVERY_QUEUE = 'delivery';

export interface DeliveryJobData {
  qid: string;
  domain: string;
  sender: string;
  /** Recipients of this domain still undelivered. */
  recipients: string[];
  receivedAt: number;
  /** Attempts made so far; BullMQ's own counter is not used because deferrals skip it. */
  attempts: number;
  messageId?: string | undefined;
  /** Binding assigned at intake; or the group, resolved to a binding at each attempt. */
  binding?: string | undefined;
  bindingGroup?: string | undefined;
  /** Why the job is in the delayed set: its next attempt, or parked while its queue had no room. */
  waiting?: 'retry' | 'parked' | undefined;
  /** The most recent attempts that ended in a deferral, oldest first. */
  history?: HistoryEntry[] | undefined;
}

export interface HistoryEntry {
  at: string;
  attempt: number;
  reply: string;
  /** Set when the attempt was charged by a domain-wide action rather than a transaction of its own. */
  action?: string | undefined;
  flags?: string[] | undefined;
  mx_host?: string | undefined;
}

/** History kept per job: enough to explain a deferral, bounded for a message retried for days. */
export const HISTORY_LIMIT = 20;

/** BullMQ job ids may not contain ':'; ids derived from the queue id make re-adds idempotent. */
export function jobIdFor(qid: string, index: number): string {
  return `${qid}-${index}`;
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

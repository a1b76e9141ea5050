// One record of an attempt's outcome: per group of recipients sharing a reply, a log line, an
// outcome hook call and a metrics count, so logs, hooks and metrics never tell different stories.
import type { Logger } from 'pino';
import type { BounceClass } from '../bounce/classes.js';
import { parseHeaders } from '../core/headers.js';
import { type Reply, formatReply } from '../core/reply.js';
import type { RecipientReply } from '../delivery/session.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { HookMessage } from '../hooks/signatures.js';
import { type RecordFeed, logEvent } from '../webhooks/feed.js';

/** Where outcomes are counted (the metrics, the rates `impulse top` shows); counts are recipients. */
export interface OutcomeCounter {
  delivered(binding: string, domain: string, recipients: number, latencyMs: number): void;
  deferred(binding: string, domain: string, status: string, bounceClass: BounceClass, recipients: number): void;
  failed(binding: string, domain: string, status: string, bounceClass: BounceClass, recipients: number): void;
}

/** Recipients of one outcome sharing one reply: a log record, a hook call, a history entry each. */
interface ReplyGroup {
  reply: Reply;
  recipients: string[];
}

/** Deferred and failed recipients also share the bounce class of their reply. */
interface ClassifiedGroup extends ReplyGroup {
  bounceClass: BounceClass;
}

export interface Grouped {
  delivered: ReplyGroup[];
  deferred: ClassifiedGroup[];
  failed: ClassifiedGroup[];
}

export function byReply(replies: readonly RecipientReply[]): ReplyGroup[] {
  const groups = new Map<string, ReplyGroup>();
  for (const r of replies) {
    const key = formatReply(r.reply);
    const g = groups.get(key) ?? { reply: r.reply, recipients: [] };
    g.recipients.push(r.recipient);
    groups.set(key, g);
  }
  return [...groups.values()];
}

export const OUTCOME_HOOKS = ['log_delivery', 'log_transient_failure', 'log_permanent_failure'] as const;

interface RecordedMessage {
  qid: string;
  domain: string;
  binding: string;
  sender: string;
  receivedAt: number;
}

interface RecordDeps {
  log: Logger;
  hooks: HookRegistry;
  counter: OutcomeCounter;
  /** The webhooks' records, the log's records of these events. */
  feed: RecordFeed;
}

/**
 * Logs, fires the outcome hooks, counts and hands the webhooks one attempt's outcome. `fields`
 * (the message's `tenant` among them) go into every log record; a deferral's records also carry `next_attempt`, a deferral's and a failure's their
 * `bounce_class`. `body` gives hooks the headers.
 */
export function recordAttempt(deps: RecordDeps, m: RecordedMessage, grouped: Grouped, fields: Record<string, unknown>,
  retryAt: number | undefined, body: Buffer | undefined, now: number): void {
  const { hooks, log, counter, feed } = deps;
  let headers: Map<string, string> | undefined;
  const message = (recipients: string[]): HookMessage => {
    headers ??= body ? parseHeaders(body) : new Map<string, string>();
    return { qid: m.qid, sender: m.sender, recipients, headers };
  };
  const logged = (event: string, msg: string, g: ReplyGroup, extra: Record<string, unknown>): string => {
    const note = formatReply(g.reply);
    logEvent(log, feed, event, msg, () => ({ ...fields, recipients: g.recipients, reply: note, ...extra }));
    return note;
  };
  for (const g of grouped.delivered) {
    const note = logged('delivery', 'delivered', g, {});
    counter.delivered(m.binding, m.domain, g.recipients.length, now - m.receivedAt);
    if (hooks.has('log_delivery')) hooks.fire('log_delivery', message(g.recipients), m.domain, now, note);
  }
  const next = retryAt !== undefined ? { next_attempt: new Date(retryAt).toISOString() } : {};
  for (const g of grouped.deferred) {
    const note = logged('transient_failure', 'deferred', g, { bounce_class: g.bounceClass, ...next });
    counter.deferred(m.binding, m.domain, g.reply.enhanced, g.bounceClass, g.recipients.length);
    if (hooks.has('log_transient_failure')) hooks.fire('log_transient_failure', message(g.recipients), m.domain, now, note, g.bounceClass);
  }
  for (const g of grouped.failed) {
    const note = logged('permanent_failure', 'failed', g, { bounce_class: g.bounceClass });
    counter.failed(m.binding, m.domain, g.reply.enhanced, g.bounceClass, g.recipients.length);
    if (hooks.has('log_permanent_failure')) hooks.fire('log_permanent_failure', message(g.recipients), m.domain, now, note, g.bounceClass);
  }
}

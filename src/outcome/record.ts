// One record of an attempt's outcome: per group of recipients sharing a reply, a log line, an
// outcome hook call and a metrics count, so logs, hooks and metrics never tell different stories.
import type { Logger } from 'pino';
import { parseHeaders } from '../core/headers.js';
import { type Reply, formatReply } from '../core/reply.js';
import type { RecipientReply } from '../delivery/session.js';
import type { HookRegistry } from '../hooks/registry.js';

/** Where outcomes are counted (the metrics); counts are recipients. */
export interface OutcomeCounter {
  delivered(binding: string, recipients: number, latencyMs: number): void;
  deferred(binding: string, status: string, recipients: number): void;
  failed(binding: string, status: string, recipients: number): void;
}

/** Recipients of one outcome sharing one reply: a log record, a hook call, a history entry each. */
interface ReplyGroup {
  reply: Reply;
  recipients: string[];
}

export type Grouped = Record<'delivered' | 'deferred' | 'failed', ReplyGroup[]>;

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

const OUTCOMES = [
  { outcome: 'delivered', event: 'delivery', hook: 'log_delivery', msg: 'delivered' },
  { outcome: 'deferred', event: 'transient_failure', hook: 'log_transient_failure', msg: 'deferred' },
  { outcome: 'failed', event: 'permanent_failure', hook: 'log_permanent_failure', msg: 'failed' },
] as const;

export const OUTCOME_HOOKS = OUTCOMES.map((o) => o.hook);

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
}

/**
 * Logs, fires the outcome hooks and counts one attempt's outcome. `fields` go into every log
 * record; a deferral's records also carry `next_attempt`. `body` gives hooks the headers.
 */
export function recordAttempt(deps: RecordDeps, m: RecordedMessage, grouped: Grouped, fields: Record<string, unknown>,
  retryAt: number | undefined, body: Buffer | undefined, now: number): void {
  const { hooks, log, counter } = deps;
  let headers: Map<string, string> | undefined;
  for (const o of OUTCOMES) {
    const withHook = hooks.has(o.hook);
    const extra = o.outcome === 'deferred' && retryAt !== undefined ? { next_attempt: new Date(retryAt).toISOString() } : {};
    for (const g of grouped[o.outcome]) {
      const note = formatReply(g.reply);
      if (log.isLevelEnabled('info')) log.info({ event: o.event, ...fields, recipients: g.recipients, reply: note, ...extra }, o.msg);
      if (o.outcome === 'delivered') counter.delivered(m.binding, g.recipients.length, now - m.receivedAt);
      else if (o.outcome === 'deferred') counter.deferred(m.binding, g.reply.enhanced, g.recipients.length);
      else counter.failed(m.binding, g.reply.enhanced, g.recipients.length);
      if (!withHook) continue;
      headers ??= body ? parseHeaders(body) : new Map<string, string>();
      hooks.fire(o.hook, { qid: m.qid, sender: m.sender, recipients: g.recipients, headers }, m.domain, now, note);
    }
  }
}

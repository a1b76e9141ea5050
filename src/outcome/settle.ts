// What an attempt settles for each recipient: delivered, failed for good, or deferred to a next
// attempt (or failed once the message has expired). Pure, so the policy is tested without Redis.
import { type Reply, isSuccess, isTemporary, reply } from '../core/reply.js';
import type { RecipientReply } from '../delivery/session.js';
import { type RetryPolicy, nextAttempt } from './retry.js';

export interface Settlement {
  delivered: RecipientReply[];
  failed: RecipientReply[];
  deferred: RecipientReply[];
  /** Set when some recipients were deferred. */
  retryAt?: number;
  /** True when deferred recipients were failed because the message expired. */
  expired: boolean;
}

function expiredReply(last: Reply): Reply {
  return reply(554, '5.4.7', `[internal] exceeded max time without delivery (last: ${last.code} ${last.enhanced} ${last.text})`);
}

export function settle(replies: RecipientReply[], now: number, receivedAt: number, attemptsMade: number, policy: RetryPolicy): Settlement {
  const delivered = replies.filter((r) => isSuccess(r.reply));
  const failed = replies.filter((r) => !isSuccess(r.reply) && !isTemporary(r.reply));
  const temporary = replies.filter((r) => !isSuccess(r.reply) && isTemporary(r.reply));
  if (temporary.length === 0) return { delivered, failed, deferred: [], expired: false };
  const decision = nextAttempt(now, receivedAt, attemptsMade, policy);
  if (decision.kind === 'expired') {
    const expired = temporary.map((r) => ({ recipient: r.recipient, reply: expiredReply(r.reply) }));
    return { delivered, failed: [...failed, ...expired], deferred: [], expired: true };
  }
  return { delivered, failed, deferred: temporary, retryAt: decision.at, expired: false };
}

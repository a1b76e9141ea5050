// What a failed connection attempt does to held mail, as pure policy: Momentum's actions
// (CONN_ACTION_REQUEUE1 charges the head of the queue, CONN_ACTION_PURGE_DOMAIN every held
// message of the domain), mx_failures_to_delay, and the pause before the queue's next attempt.
import { CONN_ACTION_PURGE_DOMAIN, CONN_ACTION_REQUEUE1 } from '../delivery/flags.js';
import { type RetryPolicy, retryDelay } from '../outcome/retry.js';

interface FailureFacts {
  /** CONN_ERROR_* possibly ORed with CONN_ACTION_*. */
  flags: number;
  /** Consecutive failed attempts to the domain's MXs, this one included. */
  consecutiveFailures: number;
  /** mx_failures_to_delay; 0 never delays. */
  mxFailuresToDelay: number;
  alreadyDelayed: boolean;
  hostFailureRetry: number;
  now: number;
}

export interface FailurePlan {
  /** Held mail that gets the failure's reply: none, the head of the queue, or every queue of the domain. */
  charge: 'none' | 'head' | 'domain';
  /** mx_failures_to_delay is reached: the domain is delayed, and every message it still holds charged. */
  delayDomain: boolean;
  /** No connection attempt for the queue before this. */
  paceUntil?: number;
}

/** Shortest pause after a failed attempt, whatever host_failure_retry says. */
const MIN_PACE_MS = 1000;

export function failurePlan(f: FailureFacts): FailurePlan {
  const purge = (f.flags & CONN_ACTION_PURGE_DOMAIN) !== 0;
  const charge = purge ? 'domain' : (f.flags & CONN_ACTION_REQUEUE1) !== 0 ? 'head' : 'none';
  if (f.mxFailuresToDelay > 0 && f.consecutiveFailures >= f.mxFailuresToDelay && !f.alreadyDelayed) return { charge, delayDomain: true };
  // A purge settled everything, and the lookup's own expiry paces the next one. Any other failure
  // paces the queue, or each arriving message would be charged at once.
  if (purge) return { charge, delayDomain: false };
  return { charge, delayDomain: false, paceUntil: f.now + Math.max(MIN_PACE_MS, f.hostFailureRetry) };
}

/**
 * When a delayed domain may be tried again: the earliest next attempt among the messages it held,
 * each by its own retry schedule, or one retry interval when it held none.
 */
export function delayEnd(now: number, held: ReadonlyArray<{ attempts: number; policy: RetryPolicy }>, fallback: RetryPolicy): number {
  if (held.length === 0) return now + retryDelay(1, fallback);
  return held.reduce((end, h) => Math.min(end, now + retryDelay(h.attempts + 1, h.policy)), Number.POSITIVE_INFINITY);
}

// Retry policy as Momentum's: retry_interval doubling per attempt up to max_retry_interval,
// never past message_expiration, after which the message fails with 554 5.4.7.
import type { ScopedValues } from '../config/scopes.js';

export interface RetryPolicy {
  retryInterval: number;
  maxRetryInterval: number;
  messageExpiration: number;
}

type RetryDecision = { kind: 'retry'; at: number } | { kind: 'expired' };

/** Delay after the given number of failed attempts (1 = the first failure). */
export function retryDelay(failedAttempts: number, policy: RetryPolicy): number {
  const exponent = Math.max(0, failedAttempts - 1);
  return Math.min(policy.retryInterval * 2 ** Math.min(exponent, 52), policy.maxRetryInterval);
}

export function nextAttempt(now: number, receivedAt: number, failedAttempts: number, policy: RetryPolicy): RetryDecision {
  const expiresAt = receivedAt + policy.messageExpiration;
  if (now >= expiresAt) return { kind: 'expired' };
  // One last attempt at the expiry moment, so the bounce is not later than promised.
  return { kind: 'retry', at: Math.min(now + retryDelay(failedAttempts, policy), expiresAt) };
}

/** The retry policy the scoped options of a binding × domain set. */
export function retryPolicyOf(o: Pick<ScopedValues, 'retry_interval' | 'max_retry_interval' | 'message_expiration'>): RetryPolicy {
  return { retryInterval: o.retry_interval, maxRetryInterval: o.max_retry_interval, messageExpiration: o.message_expiration };
}

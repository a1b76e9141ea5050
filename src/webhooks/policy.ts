// Pure decisions of the webhooks: which webhook takes a record, how long a failed batch waits
// before it is sent again, and the signature an endpoint checks a batch by.
import { createHmac } from 'node:crypto';
import type { WebhookEvent } from '../config/webhooks-schema.js';
import { type Reply, reply } from '../core/reply.js';

/** What a webhook subscribes to. */
export interface Subscription {
  events: readonly WebhookEvent[];
  tenants?: readonly string[] | undefined;
}

/** A record goes to a webhook that takes its event and, when it names tenants, whose list holds the record's tenant. */
export function takes(sub: Subscription, event: string, tenant: string | undefined): boolean {
  if (!(sub.events as readonly string[]).includes(event)) return false;
  return sub.tenants === undefined || (tenant !== undefined && sub.tenants.includes(tenant));
}

const FIRST_RETRY_MS = 1000;
const LONGEST_RETRY_MS = 300_000;

/** The wait before the n-th resend of a batch (n from 1): a second, doubling up to five minutes. */
export function retryDelay(failures: number): number {
  return Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, failures - 1));
}

/**
 * X-Impulse-Signature: HMAC-SHA256 under the webhook's secret over the X-Impulse-Timestamp
 * value (Unix seconds), a dot and the body, hex, after `sha256=`. The timestamp inside the MAC
 * lets an endpoint refuse a captured request replayed later.
 */
export function signature(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

/**
 * A request's outcome in the daemon's one error shape. A 2xx delivers the batch; anything else
 * keeps it to be sent again (4.4.1 no answer, 4.4.2 an error answer), nothing is dropped for an
 * answer: a 4xx other than 429 is marked `operator`, as it will not heal without a change there.
 */
export function outcomeOf(answer: { status: number } | { error: string }): { reply: Reply; operator: boolean } {
  if ('error' in answer) return { reply: reply(451, '4.4.1', `no answer: ${answer.error}`), operator: false };
  const { status } = answer;
  if (status >= 200 && status < 300) return { reply: reply(250, '2.0.0', `HTTP ${status}`), operator: false };
  return { reply: reply(451, '4.4.2', `HTTP ${status}, the batch is sent again later`), operator: status >= 400 && status < 500 && status !== 429 };
}

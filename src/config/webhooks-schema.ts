// The `webhooks` section: which outcome records go to which HTTP endpoint of the sender's
// systems, in batches of what size, signed with what secret.
import { z } from 'zod';
import { urlOf } from './url.js';

/** The records a webhook may take: each is the log record of that event. */
const WEBHOOK_EVENTS = ['reception', 'delivery', 'transient_failure', 'permanent_failure', 'bounce_queued', 'shaping_action'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Headers the daemon sets on every request itself. */
const OWN_HEADERS = ['content-type', 'content-length', 'host', 'x-impulse-signature', 'x-impulse-timestamp'];
/** RFC 9110's token: the characters a header name may hold. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NAME = /^[A-Za-z0-9_.-]+$/;

const httpUrl = urlOf(['http:', 'https:'], 'expected an http:// or https:// URL such as https://hooks.example.com/impulse');

/** One webhook's schema, with durations as the caller's schema takes them. */
export function webhookSchema<D extends z.ZodType>(duration: (byDefault: string) => D) {
  return z.strictObject({
    name: z.string().regex(NAME, { message: 'webhook names use letters, digits, \'.\', \'_\' and \'-\' only' })
      .describe('the webhook\'s name in logs, metrics and `impulse summary`; its stream in Redis is kept under it'),
    url: httpUrl.describe('where batches are POSTed as a JSON array of records'),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).describe(`the records it takes: ${WEBHOOK_EVENTS.join(', ')}`),
    tenants: z.array(z.string().regex(NAME, { message: 'tenant names use letters, digits, \'.\', \'_\' and \'-\' only' })).min(1).optional()
      .describe('only records of these tenants (X-Impulse-Tenant at intake); default: every record, with a tenant or without'),
    batch_size: z.number().int().min(1).max(10_000).default(100).describe('most records in one request'),
    batch_wait: duration('1s').describe('how long a batch waits to fill after its first record before it is sent anyway'),
    timeout: duration('10s').describe('time allowed for the endpoint\'s answer; a request without one is retried'),
    headers: z.record(z.string().regex(HEADER_NAME, { message: 'not a valid HTTP header name' }), z.string()).default({})
      .describe('headers added to every request, such as Authorization'),
    secret: z.string().min(16).optional()
      .describe('key of the HMAC-SHA256 signature in X-Impulse-Signature (over the X-Impulse-Timestamp value, a dot and the body); at least 16 characters; default: unsigned'),
    max_queued: z.number().int().min(1).default(1_000_000)
      .describe('records kept waiting for the endpoint at most; beyond, the oldest are dropped, logged as webhook_records_dropped and counted'),
  }).superRefine((w, ctx) => {
    for (const h of Object.keys(w.headers)) {
      if (OWN_HEADERS.includes(h.toLowerCase())) ctx.addIssue({ code: 'custom', path: ['headers', h], message: `${h} is set by the daemon itself` });
    }
  });
}

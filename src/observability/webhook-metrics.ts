// The webhooks' metrics: records posted and dropped, requests the endpoint did not take, and at
// scrape time each stream's length and the age of its oldest record.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { WebhookCounts } from '../webhooks/poster.js';
import { sourceValue } from './metrics.js';

interface QueuedFigures {
  name: string;
  queued: number;
  oldest: number | undefined;
}

export class WebhookMetrics implements WebhookCounts {
  private readonly postedTotal: Counter<'webhook'>;
  private readonly droppedTotal: Counter<'webhook' | 'reason'>;
  private readonly failuresTotal: Counter<'webhook'>;

  constructor(registry: Registry, streams: () => Promise<QueuedFigures[]>, now: () => number = Date.now) {
    const registers = [registry];
    this.postedTotal = new Counter({ name: 'impulse_webhook_records_posted_total', help: 'Records the webhook\'s endpoint took (2xx).', labelNames: ['webhook'], registers });
    this.droppedTotal = new Counter({
      name: 'impulse_webhook_records_dropped_total', labelNames: ['webhook', 'reason'], registers,
      help: 'Records dropped unsent: expired (older than webhook_retention) or overflow (beyond max_queued).',
    });
    this.failuresTotal = new Counter({ name: 'impulse_webhook_request_failures_total', help: 'Requests the endpoint did not take: no answer or not 2xx.', labelNames: ['webhook'], registers });
    // One read per scrape serves both gauges: the registry collects them concurrently.
    let reading: Promise<QueuedFigures[] | undefined> | undefined;
    const read = () => {
      reading ??= sourceValue(streams()).finally(() => { reading = undefined; });
      return reading;
    };
    new Gauge({
      name: 'impulse_webhook_queued_records', help: 'Records waiting in Redis for the webhook\'s endpoint.', labelNames: ['webhook'], registers,
      async collect() {
        this.reset();
        for (const b of await read() ?? []) this.set({ webhook: b.name }, b.queued);
      },
    });
    new Gauge({
      name: 'impulse_webhook_oldest_record_age_seconds', help: 'Age of the oldest record waiting for the webhook\'s endpoint; 0 when none waits.', labelNames: ['webhook'], registers,
      async collect() {
        this.reset();
        for (const b of await read() ?? []) this.set({ webhook: b.name }, b.oldest === undefined ? 0 : Math.max(0, (now() - b.oldest) / 1000));
      },
    });
  }

  posted(webhook: string, records: number): void {
    this.postedTotal.inc({ webhook }, records);
  }

  dropped(webhook: string, reason: 'expired' | 'overflow', records: number): void {
    this.droppedTotal.inc({ webhook, reason }, records);
  }

  failedRequest(webhook: string): void {
    this.failuresTotal.inc({ webhook });
  }
}

// The configured webhooks of a daemon: the feed the logging places hand records to, and a poster
// per webhook that takes its stream to its endpoint while this node holds its lease.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Clock } from '../core/clock.js';
import { withTimeout } from '../core/timeout.js';
import type { RedisClient } from '../store/redis.js';
import { RecordStream } from './stream.js';
import { NO_FEED, type RecordFeed, WebhookFeed } from './feed.js';
import { Poster, type PosterState, type WebhookCounts } from './poster.js';

/** A webhook as `impulse summary` shows it. */
type WebhookStatus = { name: string; url: string; queued: number; oldest: number | undefined } & PosterState;

interface WebhooksDeps {
  config: Pick<Config, 'webhooks' | 'webhook_retention'>;
  /** The queue's connection: it waits out an outage rather than failing. */
  redis: RedisClient;
  /** A new connection like it, for a poster's blocking reads. */
  connect(): RedisClient;
  prefix: string;
  node: string;
  clock: Clock;
  log: Logger;
  counts: WebhookCounts;
}

/** Records logged before a shutdown get this long to reach Redis. */
const DRAIN_TIMEOUT_MS = 5000;

export class Webhooks {
  readonly feed: RecordFeed;
  private readonly posters: Array<{ stream: RecordStream; url: string; poster: Poster }>;

  constructor(deps: WebhooksDeps) {
    // The lease names this run of the daemon, so a restarted node does not take its dead predecessor's lease as its own.
    const owner = `${deps.node}:${randomUUID()}`;
    this.posters = deps.config.webhooks.map((w) => {
      const stream = new RecordStream(deps.redis, deps.prefix, w.name);
      const log = deps.log.child({ webhook: w.name });
      const poster = new Poster({
        stream, reader: deps.connect(), owner, settings: w, retentionMs: deps.config.webhook_retention, clock: deps.clock, log, counts: deps.counts,
      });
      return { stream, url: w.url, poster };
    });
    this.feed = deps.config.webhooks.length === 0 ? NO_FEED : new WebhookFeed({
      redis: deps.redis, node: deps.node, clock: deps.clock, log: deps.log,
      webhooks: deps.config.webhooks.map((w, i) => ({ subscription: w, stream: this.posters[i]!.stream })),
    });
  }

  start(): void {
    for (const p of this.posters) p.poster.start();
  }

  /** Writes the records logged so far (bounded: Redis may be away), then stops the posters. */
  async stop(): Promise<void> {
    if (this.feed instanceof WebhookFeed) await withTimeout(this.feed.drain(), DRAIN_TIMEOUT_MS, () => undefined);
    await Promise.all(this.posters.map((p) => p.poster.stop()));
  }

  async status(): Promise<WebhookStatus[]> {
    return Promise.all(this.posters.map(async ({ stream, url, poster }) => ({ name: stream.name, url, ...await stream.size(), ...poster.status })));
  }
}

// The webhooks' side of logging: a record of an event some webhook takes is queued in Redis as it
// is logged, in each such webhook's stream; one turn's records leave in one pipeline per stream.
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { RedisClient } from '../store/redis.js';
import type { RecordStream } from './stream.js';
import { type Subscription, takes } from './policy.js';

/** A record as logged: its event, the tenant of its message if it has one, and the log record's fields. */
interface EventRecord {
  event: string;
  tenant?: string | undefined;
  [field: string]: unknown;
}

/** Where the places that log an event hand its record over. */
export interface RecordFeed {
  /** Whether any webhook takes the event: the caller builds no record otherwise. */
  wants(event: string): boolean;
  publish(record: EventRecord): void;
}

/**
 * Logs an event at info and hands the same record to the webhooks: built only when the log or a
 * webhook takes it, so neither pays for the other when it is off.
 */
export function logEvent(log: Logger, feed: RecordFeed, event: string, msg: string, build: () => Omit<EventRecord, 'event'>): void {
  const info = log.isLevelEnabled('info');
  if (!info && !feed.wants(event)) return;
  const record = { event, ...build() };
  if (info) log.info(record, msg);
  feed.publish(record);
}

/** The feed when no webhook is configured. */
export const NO_FEED: RecordFeed = { wants: () => false, publish: () => {} };

interface FeedDeps {
  redis: RedisClient;
  webhooks: ReadonlyArray<{ subscription: Subscription; stream: RecordStream }>;
  /** This node's name, in every record. */
  node: string;
  clock: Clock;
  log: Logger;
}

/** A write that failed is tried again after this long. */
const RETRY_MS = 1000;

export class WebhookFeed implements RecordFeed {
  private readonly events: Set<string>;
  /** Records not yet written, per stream, in the order they were logged. */
  private pending = new Map<RecordStream, string[]>();
  private flushing: Promise<void> | undefined;
  /** A failed write is logged once, until one succeeds. */
  private failing = false;

  constructor(private readonly deps: FeedDeps) {
    this.events = new Set(deps.webhooks.flatMap((w) => w.subscription.events));
  }

  wants(event: string): boolean {
    return this.events.has(event);
  }

  publish(record: EventRecord): void {
    let json: string | undefined;
    for (const w of this.deps.webhooks) {
      if (!takes(w.subscription, record.event, record.tenant)) continue;
      json ??= this.serialize(record);
      const list = this.pending.get(w.stream);
      if (list) list.push(json);
      else this.pending.set(w.stream, [json]);
    }
    if (json !== undefined && this.flushing === undefined) this.schedule(0);
  }

  private serialize({ event, ...fields }: EventRecord): string {
    return JSON.stringify({ event, time: new Date(this.deps.clock.now()).toISOString(), node: this.deps.node, ...fields });
  }

  /** A flush at the end of this turn, or after `ms` (a failed write is tried again a second later, not in a loop). */
  private schedule(ms: number): void {
    this.flushing = new Promise((resolve) => {
      const run = () => this.flush().finally(resolve);
      if (ms === 0) this.deps.clock.soon(run);
      else this.deps.clock.after(ms, run);
    });
  }

  /** Writes what is pending; records of a failed write go back ahead of newer ones, so order holds. */
  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    await Promise.all([...batch].map(async ([stream, records]) => {
      const pipeline = this.deps.redis.pipeline();
      for (const json of records) stream.append(pipeline, json);
      const results = await pipeline.exec().catch((err: Error) => [[err, null]] as Array<[Error | null, unknown]>);
      const firstFailed = results?.findIndex(([err]) => err) ?? -1;
      if (firstFailed < 0) {
        if (this.failing) this.deps.log.info({ event: 'webhook_feed_resumed' }, 'webhook records written to Redis again');
        this.failing = false;
        return;
      }
      if (!this.failing) {
        this.deps.log.warn({ event: 'webhook_feed_failed', webhook: stream.name, err: (results![firstFailed]![0] as Error).message },
          'webhook records not written to Redis; kept in memory and written again');
      }
      this.failing = true;
      // Written ones stay written; the rest return ahead of records logged since.
      const unwritten = results!.length === records.length ? records.filter((_, i) => results![i]![0]) : records;
      this.pending.set(stream, [...unwritten, ...(this.pending.get(stream) ?? [])]);
    }));
    this.flushing = undefined;
    if (this.pending.size > 0) this.schedule(this.failing ? RETRY_MS : 0);
  }

  /** Waits for records logged so far to be written (at shutdown). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}

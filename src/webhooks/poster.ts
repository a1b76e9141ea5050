// One webhook's poster: on the node holding its lease, takes batches from its stream in order,
// POSTs each until the endpoint takes it (a second, doubling to five minutes between tries, for
// as long as its records are younger than webhook_retention), then acknowledges it. Only the
// lease holder posts, so batches reach the endpoint one at a time, in the order they were logged.
import type { Logger } from 'pino';
import type { Clock, Timer } from '../core/clock.js';
import { formatReply } from '../core/reply.js';
import type { RedisClient } from '../store/redis.js';
import { type RecordStream, type StreamEntry, entryTime } from './stream.js';
import { outcomeOf, retryDelay, signature } from './policy.js';

/** What the poster needs of its webhook's configuration. */
interface PosterSettings {
  url: string;
  batch_size: number;
  batch_wait: number;
  timeout: number;
  headers: Record<string, string>;
  secret?: string | undefined;
  max_queued: number;
}

/** Where a poster counts what it did, by webhook. */
export interface WebhookCounts {
  posted(webhook: string, records: number): void;
  dropped(webhook: string, reason: 'expired' | 'overflow', records: number): void;
  failedRequest(webhook: string): void;
}

/** What `impulse summary` shows of a poster. */
export type PosterState =
  | { state: 'standby' }
  | { state: 'posting' }
  | { state: 'failing'; since: number; failures: number; reply: string };

interface PosterDeps {
  stream: RecordStream;
  /** A connection of the poster's own: its reads block. */
  reader: RedisClient;
  /** This node's instance, the lease's value. */
  owner: string;
  settings: PosterSettings;
  retentionMs: number;
  clock: Clock;
  log: Logger;
  counts: WebhookCounts;
}

/** The lease lasts this long unless renewed; a dead holder's webhook waits at most this for another node. */
const LEASE_MS = 15_000;
/** Renewed (and a standby node tries to take it) this often; blocking reads wait no longer. */
const LEASE_CHECK_MS = 5000;

export class Poster {
  private stopping = false;
  /** Aborts the request in flight at a stop: its batch stays in Redis for the next poster. */
  private readonly abort = new AbortController();
  private wake: (() => void) | undefined;
  private timer: Timer | undefined;
  private loop: Promise<void> | undefined;
  private current: PosterState = { state: 'standby' };

  constructor(private readonly deps: PosterDeps) {}

  get status(): PosterState {
    return this.current;
  }

  start(): void {
    this.loop = this.run().catch((err: Error) => {
      this.deps.log.error({ event: 'webhook_error', webhook: this.deps.stream.name, err: err.message }, 'webhook poster stopped');
    });
  }

  /** Stops after the request in flight (records not yet acknowledged are posted by the next holder or start) and frees the lease. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    this.timer?.cancel();
    this.wake?.();
    this.deps.reader.disconnect();
    await this.loop;
    await this.deps.stream.release(this.deps.owner).catch(() => undefined);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = this.deps.clock.after(ms, resolve);
    });
  }

  private async run(): Promise<void> {
    let prepared = false;
    // Records a dead holder (or this node before a restart) took and never saw acknowledged come first.
    let taken = true;
    while (!this.stopping) {
      if (!prepared) {
        // Redis away at start: its watch logs the outage; the stream is made once it answers.
        prepared = await this.deps.stream.prepare().then(() => true, () => false);
        if (!prepared) await this.pause(1000);
        continue;
      }
      if (!(await this.holdLease())) {
        this.current = { state: 'standby' };
        taken = true;
        await this.pause(LEASE_CHECK_MS);
        continue;
      }
      if (this.current.state === 'standby') this.current = { state: 'posting' };
      await this.trim().catch(() => undefined);
      const batch = await this.fill(taken);
      if (batch === 'none') taken = false;
      else if (batch !== 'again') await this.post(batch);
    }
  }

  /** Waits `ms` while keeping the lease; false when it was lost (or the poster stops). */
  private async holding(ms: number): Promise<boolean> {
    const end = this.deps.clock.now() + ms;
    for (;;) {
      const left = end - this.deps.clock.now();
      if (left > 0) await this.pause(Math.min(left, LEASE_CHECK_MS));
      if (this.stopping || !(await this.holdLease())) return false;
      if (left <= LEASE_CHECK_MS) return true;
    }
  }

  private async holdLease(): Promise<boolean> {
    try {
      return await this.deps.stream.claim(this.deps.owner, LEASE_MS);
    } catch {
      // Redis is away: its watch logs the outage; try again later.
      return false;
    }
  }

  /** Drops what webhook_retention and max_queued no longer allow, logged and counted. */
  private async trim(): Promise<void> {
    const { stream, clock } = this.deps;
    const { expired, overflow } = await stream.trim(clock.now() - this.deps.retentionMs, this.deps.settings.max_queued);
    this.dropped('expired', expired);
    this.dropped('overflow', overflow);
  }

  private dropped(reason: 'expired' | 'overflow', records: number): void {
    if (records === 0) return;
    const { stream, log, counts } = this.deps;
    counts.dropped(stream.name, reason, records);
    log.warn({ event: 'webhook_records_dropped', webhook: stream.name, reason, records },
      reason === 'expired' ? 'webhook records older than webhook_retention dropped' : 'more than max_queued records waiting: the oldest dropped');
  }

  /**
   * A batch: records taken before first, else new ones, waiting up to batch_wait after the first
   * for the batch to fill. Entries trimmed away meanwhile are acknowledged and left out. `none`:
   * nothing to read (no record taken before is left); `again`: read once more (the read failed,
   * found only trimmed entries, or the lease was lost while filling).
   */
  private async fill(taken: boolean): Promise<StreamEntry[] | 'none' | 'again'> {
    const { stream, reader, clock } = this.deps;
    const s = this.deps.settings;
    try {
      const batch = await stream.read(reader, s.batch_size, taken, LEASE_CHECK_MS);
      if (batch.length === 0) return taken ? 'none' : 'again';
      const due = entryTime(batch[0]!.id) + s.batch_wait;
      while (!taken && batch.length < s.batch_size && !this.stopping && clock.now() < due) {
        batch.push(...await stream.read(reader, s.batch_size - batch.length, false, Math.min(LEASE_CHECK_MS, Math.max(1, due - clock.now()))));
        if (!(await this.holdLease())) return 'again';
      }
      const gone = batch.filter((e) => e.json === undefined);
      await stream.settle(gone.map((e) => e.id));
      const kept = batch.filter((e) => e.json !== undefined);
      return kept.length > 0 ? kept : 'again';
    } catch {
      if (!this.stopping) await this.pause(1000);
      return 'again';
    }
  }

  /** Sends the batch until the endpoint takes it, its records expire, or the lease is lost. */
  private async post(batch: StreamEntry[]): Promise<void> {
    const { stream, clock, log, counts } = this.deps;
    let failures = 0;
    for (;;) {
      const s = this.deps.settings;
      const oldest = clock.now() - this.deps.retentionMs;
      const expired = batch.filter((e) => entryTime(e.id) < oldest);
      if (expired.length > 0) {
        await stream.settle(expired.map((e) => e.id));
        this.dropped('expired', expired.length);
        batch = batch.filter((e) => entryTime(e.id) >= oldest);
        if (batch.length === 0) return;
      }
      const { reply, operator } = outcomeOf(await this.request(s, batch));
      if (reply.code < 300) {
        await stream.settle(batch.map((e) => e.id));
        counts.posted(stream.name, batch.length);
        if (this.current.state === 'failing') {
          log.info({ event: 'webhook_recovered', webhook: stream.name, failures: this.current.failures }, 'webhook endpoint takes batches again');
        }
        this.current = { state: 'posting' };
        return;
      }
      // A request cut short by a stop is no failure of the endpoint's.
      if (this.stopping) return;
      failures++;
      counts.failedRequest(stream.name);
      const since = this.current.state === 'failing' ? this.current.since : clock.now();
      this.current = { state: 'failing', since, failures, reply: formatReply(reply) };
      // Logged at the first failure and then at every tenth, so an outage of hours leaves a trace, not a flood.
      if (failures % 10 === 1) {
        log[operator ? 'error' : 'warn']({ event: 'webhook_failed', webhook: stream.name, url: s.url, records: batch.length, failures, reply: formatReply(reply) },
          operator ? 'webhook endpoint refuses the batch; it is kept and sent again until the endpoint is fixed' : 'webhook batch not taken; sent again later');
      }
      if (!(await this.holding(retryDelay(failures)))) return;
    }
  }

  private async request(s: PosterSettings, batch: StreamEntry[]): Promise<{ status: number } | { error: string }> {
    // Each record gains its stream id: unique within the webhook, for an endpoint to drop a batch it was sent twice.
    const body = `[${batch.map((e) => `{"id":"${e.id}",${e.json!.slice(1)}`).join(',')}]`;
    const timestamp = Math.floor(this.deps.clock.now() / 1000);
    const headers: Record<string, string> = { ...s.headers, 'content-type': 'application/json' };
    if (s.secret !== undefined) {
      headers['x-impulse-timestamp'] = String(timestamp);
      headers['x-impulse-signature'] = signature(s.secret, timestamp, body);
    }
    try {
      const res = await fetch(s.url, { method: 'POST', headers, body, signal: AbortSignal.any([AbortSignal.timeout(s.timeout), this.abort.signal]), redirect: 'error' });
      await res.arrayBuffer().catch(() => undefined);
      return { status: res.status };
    } catch (err) {
      const e = err as Error & { cause?: Error };
      return { error: e.name === 'TimeoutError' ? `no answer within ${s.timeout} ms` : (e.cause?.message ?? e.message) };
    }
  }
}

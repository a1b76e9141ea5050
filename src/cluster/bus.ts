// What one node tells the others sharing its Redis: one pub/sub channel of JSON events, each naming
// its sender, which ignores its own. Pub/sub reaches only the nodes subscribed at the time, so what
// must outlive an event is also kept in Redis (state.ts) and read again after a reconnection.
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { Reply } from '../core/reply.js';
import type { ShapingAction } from '../shaping/action.js';

/** A suspension target: a domain from every binding, or a binding to every domain. */
export type SuspendTarget = { domain: string } | { binding: string };

export type ClusterEvent =
  | { kind: 'suspend'; target: SuspendTarget; on: boolean }
  /** mx_failures_to_delay reached on some node: every node holds the domain until `until`. */
  | { kind: 'delay'; domain: string; until: number; reply: Reply; failures: number }
  /** An operator's flush: delays and pacing end (every domain when none is named). */
  | { kind: 'flush'; domain?: string }
  /** An operator's fail: mail held in memory that matches fails; the jobs fail as they come off the queue. */
  | { kind: 'fail'; match: { domain: string } | { qid: string }; jobs: string[]; reply: Reply; quiet: boolean }
  | { kind: 'shaping'; change: 'started' | 'ended'; action: ShapingAction };

const KINDS = new Set<ClusterEvent['kind']>(['suspend', 'delay', 'flush', 'fail', 'shaping']);

interface Envelope {
  from: string;
  event: ClusterEvent;
}

function isEnvelope(v: unknown): v is Envelope {
  const e = v as Partial<Envelope> | null;
  return typeof e === 'object' && e !== null && typeof e.from === 'string'
    && typeof e.event === 'object' && e.event !== null && KINDS.has((e.event as { kind: ClusterEvent['kind'] }).kind);
}

interface BusDeps {
  /** Publishes; may be the connection other state is written on, so a write and its event go in one MULTI. */
  redis: RedisClient;
  /** A connection in subscriber mode, shared with other listeners of their own channels. */
  subscriber: RedisClient;
  prefix: string;
  node: string;
  log: Logger;
}

export class ClusterBus {
  readonly channel: string;
  private readonly handlers: Array<(e: ClusterEvent, from: string) => void> = [];
  private readonly resyncs: Array<() => void> = [];
  private subscribed = false;

  constructor(private readonly deps: BusDeps) {
    this.channel = `${deps.prefix}:cluster`;
  }

  /** Every event another node sends. */
  on(handler: (e: ClusterEvent, from: string) => void): void {
    this.handlers.push(handler);
  }

  /** After the subscriber reconnected: events sent meanwhile were missed, so state kept in Redis is read again. */
  onResync(handler: () => void): void {
    this.resyncs.push(handler);
  }

  async start(): Promise<void> {
    const { subscriber, log } = this.deps;
    subscriber.on('message', (channel: string, text: string) => {
      if (channel === this.channel) this.receive(text);
    });
    // ioredis subscribes again on its own after a reconnection; 'ready' follows it.
    subscriber.on('ready', () => {
      if (!this.subscribed) return;
      log.info({ event: 'cluster_resync' }, 'cluster events may have been missed while Redis was unreachable; reading shared state again');
      for (const r of this.resyncs) r();
    });
    await subscriber.subscribe(this.channel);
    this.subscribed = true;
  }

  async publish(e: ClusterEvent): Promise<void> {
    await this.deps.redis.publish(this.channel, this.encode(e));
  }

  /** Adds the event to a MULTI, so it is sent only with the writes it describes. */
  publishIn(multi: ChainableCommander, e: ClusterEvent): ChainableCommander {
    return multi.publish(this.channel, this.encode(e));
  }

  private encode(e: ClusterEvent): string {
    return JSON.stringify({ from: this.deps.node, event: e } satisfies Envelope);
  }

  private receive(text: string): void {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      v = undefined;
    }
    if (!isEnvelope(v)) {
      this.deps.log.warn({ event: 'cluster_event_invalid', text: text.slice(0, 200) }, 'cluster event not understood; ignored');
      return;
    }
    if (v.from === this.deps.node) return;
    for (const h of this.handlers) {
      try {
        h(v.event, v.from);
      } catch (err) {
        this.deps.log.error({ event: 'cluster_event_failed', kind: v.event.kind, from: v.from, err: (err as Error).message }, 'cluster event could not be applied');
      }
    }
  }
}

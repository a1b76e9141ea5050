// Whether bodies are stored compressed now: only while Redis holds enough to make the memory matter.
//
// Brotli's fastest quality costs about 25 µs of CPU per 5 KB body stored and as much per read:
// a tenth of the daemon's CPU per message when mail leaves within seconds (W5: 0.82 against 0.91
// ms per message, 6% more messages per second). Such mail never sits in Redis long enough for the
// quarter it would save to count; a queue of millions does. So bodies are compressed while Redis's
// used memory is at or above `redis.compress_bodies_above` (a busy master's, on a Cluster), and
// stored as they came below three quarters of it: the gap keeps a Redis hovering at the line from
// switching at every look. Bodies stored either way are read either way.
import { Cluster } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisClient } from './redis.js';

/** Below this share of the threshold compression stops again. */
const OFF_BELOW = 0.75;

/** How often Redis's memory is looked at: intake fills it by some 5 MB/s at most on one node. */
const POLL_MS = 2000;

/** Whether to compress, given the last decision and Redis's used memory now (undefined: unknown, keep the last). */
export function compressionWanted(wasOn: boolean, usedBytes: number | undefined, aboveBytes: number): boolean {
  if (aboveBytes === 0) return true;
  if (usedBytes === undefined) return wasOn;
  return wasOn ? usedBytes >= aboveBytes * OFF_BELOW : usedBytes >= aboveBytes;
}

/** What the message store asks before it stores a body. */
export interface CompressionSwitch {
  readonly on: boolean;
}

/** Compression turned off (`redis.compress_bodies: false`) or on for every body (`compress_bodies_above: 0`). */
export const fixedCompression = (on: boolean): CompressionSwitch => ({ on });

function usedMemory(info: string): number | undefined {
  const m = /^used_memory:(\d+)/m.exec(info);
  return m ? Number(m[1]) : undefined;
}

export class BodyCompression implements CompressionSwitch {
  private current = false;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(private readonly redis: RedisClient, private readonly aboveBytes: number, private readonly log: Logger) {}

  get on(): boolean {
    return this.current;
  }

  /** Looks at Redis now, then every POLL_MS until stopped. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), POLL_MS).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look at Redis's memory; a look still waiting (Redis away) is not doubled. */
  async refresh(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const used = await this.usedBytes().catch(() => undefined);
      const next = compressionWanted(this.current, used, this.aboveBytes);
      if (next !== this.current) {
        this.log.info({ event: 'body_compression', on: next, redis_used_memory: used, threshold: this.aboveBytes },
          next ? 'Redis holds enough to compress the bodies stored from now on' : 'Redis holds little again: bodies stored as they came from now on');
      }
      this.current = next;
    } finally {
      this.polling = false;
    }
  }

  private async usedBytes(): Promise<number | undefined> {
    const nodes = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
    const used = (await Promise.all(nodes.map((n) => n.info('memory')))).map(usedMemory);
    return used.length === 0 || used.some((u) => u === undefined) ? undefined : Math.max(...(used as number[]));
  }
}

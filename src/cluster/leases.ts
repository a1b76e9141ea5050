// cluster_max_outbound_connections: connections counted across all nodes as leases with a TTL in Redis.
// Each open connection holds a lease, a member of a sorted set per limit key scored by its expiry.
// Leases that lapse by themselves are KumoMTA's idea: a node that dies without releasing stops
// counting once its leases lapse, with no one to clean up after it. Here expiry is judged by
// Redis's clock (the nodes' clocks may differ), and a node refused a lease is woken by a release
// message or by the moment the earliest lease would lapse, never by polling.
//
// Redis commands: acquire is one EVALSHA per attempt, release one EVALSHA (ZREM, and PUBLISH only
// when the lease was still there), so a granted acquire and its release cost two. Renewal is one
// EVALSHA per key this node holds leases on, every ttlMs / 3, whatever the number of leases.
import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../store/redis.js';
import { scriptCommand } from '../store/script-command.js';
import type { Logger } from 'pino';

export interface Lease {
  readonly key: string;
  readonly id: string;
}

interface LeasesDeps {
  /** For commands. */
  redis: RedisClient;
  /** A connection of its own, which the class puts in subscribe mode. */
  subscriber: RedisClient;
  prefix: string;
  /** node_name: the first part of each lease's member, so an operator can tell whose it is. */
  node: string;
  ttlMs: number;
  log: Logger;
}

// Milliseconds by Redis's clock; a member is live while its score (its expiry) is after now.
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS[1] the key's set; ARGV: member, limit, TTL, the set's own TTL. 0 when granted, else the ms
// until the earliest lease lapses, measured here so that the caller's clock plays no part.
const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.ceil(tonumber(first[2]) - now)`;

// KEYS[1] the key's set; ARGV: TTL, the set's own TTL, then this node's members on it. A member
// missing or past its expiry is put back all the same (the connection it stands for is open) and
// returned, so that the node can say so.
const RENEW = `${NOW}
local lapsed = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not score or tonumber(score) <= now then lapsed[#lapsed + 1] = ARGV[i] end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return lapsed`;

// KEYS[1] the key's set; ARGV: member, channel, key. A lease that had already lapsed freed its
// place then, and waiters were woken by their timers; publishing again would only wake them twice.
const RELEASE = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 0`;

const COUNT = `${NOW}
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')`;

// Names of the scripts as ioredis commands (see script-command.ts).
const SCRIPTS = { impulseLeaseAcquire: ACQUIRE, impulseLeaseRenew: RENEW, impulseLeaseRelease: RELEASE, impulseLeaseCount: COUNT };
type ScriptName = keyof typeof SCRIPTS;
type Script = (key: string, ...args: Array<string | number>) => Promise<unknown>;

/** A set outlives its last renewal by this many TTLs, then goes with the node that abandoned it. */
const SET_TTLS = 3;
/** Renewals per TTL: two may fail before a lease lapses. */
const RENEWALS_PER_TTL = 3;

interface Waiter {
  promise: Promise<void>;
  wake: () => void;
  timer: NodeJS.Timeout | undefined;
  /** When the timer fires, by performance.now(). */
  at: number;
}

export class ClusterLeases {
  private readonly channel: string;
  private readonly ttlMs: number;
  /** Ids of the leases this node holds, per key. */
  private readonly leases = new Map<string, Set<string>>();
  private readonly waiters = new Map<string, Waiter>();
  /**
   * Acquires in flight per key, with the number of the last release message seen for the key
   * meanwhile: a release published after Redis refused us can arrive before the refusal does,
   * when there is no waiter yet to wake.
   */
  private readonly asking = new Map<string, { inFlight: number; freed: number }>();
  /** Release messages received, to order them against acquires. */
  private messages = 0;
  private renewal: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly scripts: Record<ScriptName, Script>;

  constructor(private readonly deps: LeasesDeps) {
    this.channel = `${deps.prefix}:lease-freed`;
    // Whole milliseconds, so that scores are whole and the time to a lapse is never rounded to 0.
    this.ttlMs = Math.max(1, Math.ceil(deps.ttlMs));
    const script = ([name, lua]: [string, string]) => [name, scriptCommand<Parameters<Script>, unknown>(deps.redis, name, lua, 1)];
    this.scripts = Object.fromEntries(Object.entries(SCRIPTS).map(script)) as Record<ScriptName, Script>;
  }

  async start(): Promise<void> {
    this.deps.subscriber.on('message', this.onMessage);
    await this.deps.subscriber.subscribe(this.channel);
    this.scheduleRenewal();
  }

  /** A lease on `key` if fewer than `limit` live (unexpired) leases exist across the cluster, else a promise of when to ask again. */
  async acquire(key: string, limit: number): Promise<{ lease: Lease } | { freed: Promise<void> }> {
    if (this.closed) throw new Error('cluster leases are closed');
    if (!(limit >= 1)) throw new RangeError(`lease limit of ${key} must be at least 1, not ${limit}`);
    const id = randomBytes(9).toString('base64url');
    const seen = this.messages;
    const asking = this.asking.get(key) ?? { inFlight: 0, freed: 0 };
    this.asking.set(key, asking);
    asking.inFlight++;
    let waitMs: number;
    try {
      waitMs = Number(await this.run('impulseLeaseAcquire', key, this.member(id), limit, this.ttlMs, SET_TTLS * this.ttlMs));
    } finally {
      if (--asking.inFlight === 0) this.asking.delete(key);
    }
    if (waitMs === 0) {
      if (this.closed) {
        // Granted while closing: nothing would renew it, so it must not be left to block others for a TTL.
        await this.drop(key, id);
        throw new Error('cluster leases are closed');
      }
      const ids = this.leases.get(key) ?? new Set<string>();
      this.leases.set(key, ids.add(id));
      return { lease: { key, id } };
    }
    if (asking.freed > seen) return { freed: Promise.resolve() };
    return { freed: this.freedWithin(key, waitMs) };
  }

  /** Fire and forget: a failure is logged, and the lease then lapses after its TTL. */
  release(lease: Lease): void {
    const ids = this.leases.get(lease.key);
    if (!ids?.delete(lease.id)) return;
    if (ids.size === 0) this.leases.delete(lease.key);
    void this.drop(lease.key, lease.id);
  }

  /** Live leases on key across the cluster (admin views). */
  async count(key: string): Promise<number> {
    return Number(await this.run('impulseLeaseCount', key));
  }

  /** Leases this node holds now, per key. */
  held(): Map<string, number> {
    return new Map([...this.leases].map(([key, ids]) => [key, ids.size]));
  }

  /** Releases what it holds (best effort), unsubscribes and stops its timers; the connections stay the caller's. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.renewal);
    const drops = [...this.leases].flatMap(([key, ids]) => [...ids].map((id) => this.drop(key, id)));
    this.leases.clear();
    // No message or renewal will come for them any more: waiters ask again now, and learn that it is over.
    for (const key of [...this.waiters.keys()]) this.wake(key);
    this.deps.subscriber.off('message', this.onMessage);
    // A subscriber already disconnected has no subscription left to end.
    const unsubscribed = this.deps.subscriber.unsubscribe(this.channel).then(() => undefined, () => undefined);
    await Promise.all([...drops, unsubscribed]);
  }

  private setKey(key: string): string {
    return `${this.deps.prefix}:lease:${key}`;
  }

  private member(id: string): string {
    return `${this.deps.node}:${id}`;
  }

  private run(name: ScriptName, key: string, ...args: Array<string | number>): Promise<unknown> {
    return this.scripts[name](this.setKey(key), ...args);
  }

  /** Removes the lease from Redis and tells every node's waiters; never rejects. */
  private async drop(key: string, id: string): Promise<void> {
    try {
      await this.run('impulseLeaseRelease', key, this.member(id), this.channel, key);
    } catch (err) {
      this.deps.log.warn({ event: 'lease_release_failed', key, id, err: (err as Error).message },
        `releasing a lease on ${key} failed; it lapses within ${this.ttlMs} ms`);
    }
  }

  private readonly onMessage = (channel: string, key: string): void => {
    if (channel !== this.channel) return;
    this.messages++;
    const asking = this.asking.get(key);
    if (asking) asking.freed = this.messages;
    this.wake(key);
  };

  /** The promise all waiters on key share, resolved at the latest `waitMs` from now. */
  private freedWithin(key: string, waitMs: number): Promise<void> {
    let waiter = this.waiters.get(key);
    if (!waiter) {
      let wake!: () => void;
      const promise = new Promise<void>((resolve) => { wake = resolve; });
      waiter = { promise, wake, timer: undefined, at: Infinity };
      this.waiters.set(key, waiter);
    }
    // Nodes configured with different TTLs can name different earliest lapses; the soonest wins.
    const at = performance.now() + waitMs;
    if (at < waiter.at) {
      waiter.at = at;
      this.armTimer(key, waiter);
    }
    return waiter.promise;
  }

  // Node counts a timer from the event loop's cached clock, which lags when the process was busy
  // or descheduled, so a timer can fire that much early; a waiter woken before the lease lapsed
  // would only be refused again, so the rest is waited out.
  private armTimer(key: string, waiter: Waiter): void {
    const left = Math.ceil(waiter.at - performance.now());
    clearTimeout(waiter.timer);
    if (left > 0) waiter.timer = setTimeout(() => this.armTimer(key, waiter), left).unref();
    else this.wake(key);
  }

  private wake(key: string): void {
    const waiter = this.waiters.get(key);
    if (!waiter) return;
    this.waiters.delete(key);
    clearTimeout(waiter.timer);
    waiter.wake();
  }

  // The next round is timed from the end of the last, so that rounds never pile up behind a Redis
  // that does not answer; the first to get through restores whatever lapsed meanwhile.
  private scheduleRenewal(): void {
    this.renewal = setTimeout(() => {
      void this.renew().finally(() => {
        if (!this.closed) this.scheduleRenewal();
      });
    }, this.ttlMs / RENEWALS_PER_TTL).unref();
  }

  // One single-key script per key, all sent in the same tick. A script over many keys would fail
  // on a Redis Cluster (CROSSSLOT), and so would an ioredis pipeline there: it sends the whole
  // pipeline to one node and rejects one whose keys are served by different nodes. Separate
  // commands are each routed to their key's node; on one Redis they are still written to the
  // socket back to back, so a round costs one round trip of latency (and with enableAutoPipelining
  // ioredis batches them per node). Commands on one connection run in order, so a release sent
  // after a round has started cannot be undone by that round's renewal.
  private async renew(): Promise<void> {
    const setTtlMs = SET_TTLS * this.ttlMs;
    const rounds = [...this.leases].map(async ([key, ids]) => {
      const members = [...ids].map((id) => this.member(id));
      const lapsed = await this.run('impulseLeaseRenew', key, this.ttlMs, setTtlMs, ...members) as string[];
      if (lapsed.length > 0) {
        this.deps.log.warn({ event: 'lease_lapsed', key, leases: lapsed.length, ttlMs: this.ttlMs },
          `${lapsed.length} of ${members.length} leases on ${key} had lapsed (not renewed for over ${this.ttlMs} ms); put back, as their connections are open`);
      }
    });
    const failed = (await Promise.allSettled(rounds)).filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      this.deps.log.warn({ event: 'lease_renew_failed', keys: failed.length, err: (failed[0]!.reason as Error).message },
        `renewing leases on ${failed.length} keys failed; trying again in ${Math.round(this.ttlMs / RENEWALS_PER_TTL)} ms`);
    }
  }
}

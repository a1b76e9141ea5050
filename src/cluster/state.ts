// The state every node of a cluster holds alike: suspensions and domain delays are kept in Redis
// (so a node started later, or one whose subscription dropped, reads them) and announced on the
// bus; an operator's flush and fail, and shaping actions, are announced. Each change is applied
// here at once and on the other nodes as their subscription delivers it (milliseconds).
import type { RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Reply } from '../core/reply.js';
import type { ShapingAction } from '../shaping/action.js';
import type { ClusterBus, ClusterEvent, SuspendTarget } from './bus.js';

/** What a cluster event does on this node. */
export interface LocalNode {
  suspend(target: SuspendTarget, on: boolean): void;
  delay(domain: string, until: number, reply: Reply): void;
  flush(domain: string | undefined): void;
  /** Fails held mail that matches and dooms the jobs as they come off the queue; how many held were failed. */
  fail(match: { domain: string } | { qid: string }, jobs: readonly string[], reply: Reply, quiet: boolean): number;
  shaping(change: 'started' | 'ended', action: ShapingAction): void;
}

interface StateDeps {
  redis: RedisClient;
  bus: ClusterBus;
  prefix: string;
  node: string;
  clock: Pick<Clock, 'now'>;
  log: Logger;
  local: LocalNode;
}

interface StoredDelay {
  until: number;
  reply: Reply;
  failures: number;
  node: string;
}

const fieldOf = (t: SuspendTarget) => ('domain' in t ? `domain:${t.domain}` : `binding:${t.binding}`);

function targetOf(field: string): SuspendTarget | undefined {
  const [kind, ...rest] = field.split(':');
  const name = rest.join(':');
  if (name === '') return undefined;
  return kind === 'domain' ? { domain: name } : kind === 'binding' ? { binding: name } : undefined;
}

function parseDelay(text: string): StoredDelay | undefined {
  try {
    const v = JSON.parse(text) as Partial<StoredDelay>;
    return typeof v.until === 'number' && typeof v.reply?.code === 'number' ? v as StoredDelay : undefined;
  } catch {
    return undefined;
  }
}

/** The fields of an event worth a log record (a fail's job list is not). */
function detail(e: Exclude<ClusterEvent, { kind: 'shaping' }>): Record<string, unknown> {
  switch (e.kind) {
    case 'suspend':
      return { ...e.target, on: e.on };
    case 'delay':
      return { domain: e.domain, until: new Date(e.until).toISOString() };
    case 'flush':
      return e.domain === undefined ? {} : { domain: e.domain };
    case 'fail':
      return { ...e.match, jobs: e.jobs.length };
  }
}

export class ClusterState {
  private readonly suspendedKey: string;
  private readonly delaysKey: string;

  constructor(private readonly deps: StateDeps) {
    this.suspendedKey = `${deps.prefix}:suspended`;
    this.delaysKey = `${deps.prefix}:delays`;
    deps.bus.on((e, from) => this.apply(e, from));
    deps.bus.onResync(() => {
      this.restore().catch((err: Error) => deps.log.error({ event: 'cluster_resync_failed', err: err.message }, 'shared state not read again'));
    });
  }

  /** Applies the suspensions and delays in Redis: at start, and after a lost subscription. */
  async restore(): Promise<void> {
    const [suspended, delays] = await Promise.all([this.deps.redis.hgetall(this.suspendedKey), this.deps.redis.hgetall(this.delaysKey)]);
    for (const field of Object.keys(suspended)) {
      const target = targetOf(field);
      if (target) this.deps.local.suspend(target, true);
    }
    const now = this.deps.clock.now();
    const ended: string[] = [];
    for (const [domain, text] of Object.entries(delays)) {
      const d = parseDelay(text);
      if (d && d.until > now) this.deps.local.delay(domain, d.until, d.reply);
      else ended.push(domain);
    }
    if (ended.length > 0) await this.deps.redis.hdel(this.delaysKey, ...ended);
  }

  /** An operator's suspend or resume: kept in Redis, in force on every node. */
  async suspend(target: SuspendTarget, on: boolean): Promise<void> {
    const multi = this.deps.redis.multi();
    if (on) multi.hset(this.suspendedKey, fieldOf(target), JSON.stringify({ node: this.deps.node, at: this.deps.clock.now() }));
    else multi.hdel(this.suspendedKey, fieldOf(target));
    await this.deps.bus.publishIn(multi, { kind: 'suspend', target, on }).exec();
    this.deps.local.suspend(target, on);
  }

  /** An operator's flush: delays end on every node. */
  async flush(domain: string | undefined): Promise<void> {
    const multi = this.deps.redis.multi();
    if (domain === undefined) multi.del(this.delaysKey);
    else multi.hdel(this.delaysKey, domain);
    await this.deps.bus.publishIn(multi, { kind: 'flush', ...(domain === undefined ? {} : { domain }) }).exec();
    this.deps.local.flush(domain);
  }

  /** An operator's fail, on every node; returns how many held here were failed. */
  async fail(match: { domain: string } | { qid: string }, jobs: string[], reply: Reply, quiet: boolean): Promise<number> {
    await this.deps.bus.publish({ kind: 'fail', match, jobs, reply, quiet });
    return this.deps.local.fail(match, jobs, reply, quiet);
  }

  /** This node delayed a domain (mx_failures_to_delay): the others hold it too. */
  delayed(domain: string, until: number, reply: Reply, failures: number): void {
    const stored: StoredDelay = { until, reply, failures, node: this.deps.node };
    const multi = this.deps.redis.multi().hset(this.delaysKey, domain, JSON.stringify(stored));
    this.deps.bus.publishIn(multi, { kind: 'delay', domain, until, reply, failures }).exec()
      .catch((err: Error) => this.deps.log.error({ event: 'cluster_publish_failed', kind: 'delay', domain, err: err.message }, 'other nodes not told of the delay'));
  }

  /** A shaping action started, was extended or was cleared here: the others hold it alike. */
  shaped(change: 'started' | 'ended', action: ShapingAction): void {
    this.deps.bus.publish({ kind: 'shaping', change, action })
      .catch((err: Error) => this.deps.log.error({ event: 'cluster_publish_failed', kind: 'shaping', id: action.id, err: err.message }, 'other nodes not told of the shaping action'));
  }

  private apply(e: ClusterEvent, from: string): void {
    const { local, log } = this.deps;
    if (e.kind !== 'shaping') log.info({ event: 'cluster_event', kind: e.kind, from, ...detail(e) }, `${e.kind} from node ${from}`);
    switch (e.kind) {
      case 'suspend':
        return local.suspend(e.target, e.on);
      case 'delay':
        return local.delay(e.domain, e.until, e.reply);
      case 'flush':
        return local.flush(e.domain);
      case 'fail':
        return void local.fail(e.match, e.jobs, e.reply, e.quiet);
      case 'shaping':
        return local.shaping(e.change, e.action);
    }
  }
}

// The daemons sharing one Redis ("nodes") announce themselves: each writes a heartbeat with what it
// holds and serves, so any of them can show the whole cluster, and a second daemon under a live
// node's name is refused. One hash, a field per node name, its value the node's record as JSON.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../core/clock.js';
import { withTimeout } from '../core/timeout.js';
import type { Counts } from '../observability/metrics.js';

/** How often a node writes its heartbeat. */
const HEARTBEAT_INTERVAL_MS = 2000;
/** A node is alive while its last heartbeat is younger than this many of its intervals: one lost write or a slow turn is not death. */
const ALIVE_INTERVALS = 3;
/** A node silent this long is forgotten: long enough for an operator to notice a dead one. */
const FORGET_AFTER_MS = 86_400_000;
/** Rows of the per-queue table a heartbeat carries at most, the largest first: the record stays under ~60 KB. */
const MAX_QUEUE_ROWS = 1000;
/** An admin view waits this long for the node list, so `impulse summary` answers during a Redis outage. */
const LIST_TIMEOUT_MS = 5000;
/** A stop waits this long to remove its entry; a Redis outage must not hold the shutdown. */
const REMOVE_TIMEOUT_MS = 2000;

// Writes the heartbeat at Redis's time unless another instance's record under the name is fresh
// (then returns it with the time), or is the instance ARGV[4] this node may replace. The record
// is JSON whose text starts with its instance and interval; the script appends heartbeat_ms, so
// it reads another's without decoding the whole table. Redis's one clock judges every node, so
// skew between the hosts' clocks never makes a live node look silent or a dead one live.
const WRITE = `
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local owner = string.match(old, '^{"instance":"([^"]*)"')
  if owner ~= ARGV[2] and owner ~= ARGV[4] then
    local interval = tonumber(string.match(old, '^{"instance":"[^"]*","interval_ms":(%d+),'))
    local at = tonumber(string.match(old, ',"heartbeat_ms":(%d+)}$'))
    if interval and at and now - at < ${ALIVE_INTERVALS} * interval then return { old, tostring(now) } end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], string.sub(ARGV[3], 1, -2) .. ',"heartbeat_ms":' .. now .. '}')
return false`;

// Removes the entry only while it is this instance's: a refused or displaced node leaves the other's.
const REMOVE = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and string.match(old, '^{"instance":"([^"]*)"') == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

/** What a node tells the others at each heartbeat. */
export interface NodeReport {
  connections: { outbound: number; connecting: number; inbound: number };
  /** Messages held in memory by the scheduler. */
  held: number;
  /** Recipients per second, as `impulse summary` shows them. */
  rates: Counts;
}

/** One binding × domain ready queue of a node: mail held and connections open. */
export interface QueueFigures {
  domain: string;
  binding: string;
  ready: number;
  in_flight: number;
  connections: number;
  connecting: number;
}

/** A node as its last heartbeat told, judged at Redis's time. */
export interface NodeStatus extends NodeReport {
  name: string;
  host: string;
  pid: number;
  version: string;
  startedAt: number;
  heartbeatAt: number;
  ageMs: number;
  alive: boolean;
  /** The record this registry wrote. */
  self: boolean;
  queues: QueueFigures[];
}

interface NodeRegistryDeps {
  redis: RedisClient;
  prefix: string;
  name: string;
  version: string;
  clock: Clock;
  log: Logger;
  report(): NodeReport;
  /** This node's ready queues with mail or connections, read at each heartbeat. */
  queues(): QueueFigures[];
  /** This machine's name; tests give two registries in one process different ones. */
  host?: string;
  intervalMs?: number;
}

interface NodeRecord extends NodeReport {
  instance: string;
  interval_ms: number;
  name: string;
  host: string;
  pid: number;
  version: string;
  started_at: number;
  heartbeat_ms: number;
  queues: Array<[string, string, number, number, number, number]>;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const allNum = (o: unknown, keys: readonly string[]) => typeof o === 'object' && o !== null && keys.every((k) => isNum((o as Record<string, unknown>)[k]));

function isRecord(v: unknown): v is NodeRecord {
  const r = v as Partial<NodeRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.instance === 'string' && typeof r.name === 'string' && typeof r.host === 'string'
    && typeof r.version === 'string' && Number.isInteger(r.pid) && r.pid! > 0 && allNum(r, ['interval_ms', 'started_at', 'heartbeat_ms', 'held'])
    && allNum(r.connections, ['outbound', 'connecting', 'inbound']) && allNum(r.rates, ['received', 'delivered', 'transient', 'failed'])
    && Array.isArray(r.queues);
}

function parseRecord(text: string): NodeRecord | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return isRecord(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function figures(row: unknown): QueueFigures | undefined {
  if (!Array.isArray(row) || typeof row[0] !== 'string' || typeof row[1] !== 'string' || !row.slice(2, 6).every(isNum)) return undefined;
  const [domain, binding, ready, inFlight, connections, connecting] = row as NodeRecord['queues'][number];
  return { domain, binding, ready, in_flight: inFlight, connections, connecting };
}

/** True when a process with this id exists on this machine (EPERM: it does, under another user). */
function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const weight = (q: QueueFigures) => q.ready + q.in_flight + q.connections + q.connecting;

export class NodeRegistry {
  readonly name: string;
  private readonly key: string;
  private readonly instance = randomUUID();
  private readonly host: string;
  private readonly interval: number;
  private readonly startedAt: number;
  private timer: Timer | undefined;
  private stopped = false;
  /** Another live instance holds the name: logged once, until this node gets it back. */
  private displaced = false;
  /** Heartbeats are failing: logged once, until one succeeds. */
  private failing = false;

  constructor(private readonly deps: NodeRegistryDeps) {
    this.name = deps.name;
    this.key = `${deps.prefix}:nodes`;
    this.host = deps.host ?? hostname();
    this.interval = deps.intervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.startedAt = deps.clock.now();
  }

  /**
   * Claims the name with a first heartbeat and keeps beating. Refuses (rejects) while another live
   * node holds it, unless that node is this one's dead predecessor on the same machine: a restart
   * after a crash must not wait for the old heartbeat to age.
   */
  async start(): Promise<void> {
    let other = await this.write('');
    if (other && other.record && this.isPredecessor(other.record)) other = await this.write(other.record.instance);
    if (other) {
      const r = other.record;
      const held = r ? `pid ${r.pid} on ${r.host}, last heartbeat ${new Date(r.heartbeat_ms).toISOString()} (${((other.now - r.heartbeat_ms) / 1000).toFixed(1)} s ago)` : 'a record this version cannot read';
      this.deps.log.error({ event: 'node_name_taken', node: this.name, ...(r ? { other_pid: r.pid, other_host: r.host } : {}) }, 'another live node has this node_name');
      throw new Error(`node_name "${this.name}" is taken by a live node sharing this Redis (${held}); give each daemon a distinct node_name`);
    }
    this.deps.log.info({ event: 'node_started', node: this.name, interval_ms: this.interval }, 'heartbeats started');
    this.schedule();
  }

  /** Writes one heartbeat now; the timer calls it every interval. */
  async beat(): Promise<void> {
    const other = await this.write('');
    if (other && !this.displaced) {
      this.deps.log.error({ event: 'node_name_taken', node: this.name, ...(other.record ? { other_pid: other.record.pid, other_host: other.record.host } : {}) },
        'another live node took this node_name; heartbeats are refused until it is silent');
    } else if (!other && this.displaced) {
      this.deps.log.info({ event: 'node_name_regained', node: this.name }, 'the other node under this node_name went silent; heartbeats written again');
    }
    this.displaced = other !== undefined;
  }

  /** Every node's last heartbeat, this one's included; nodes silent for a day are removed on the way. */
  async list(): Promise<NodeStatus[]> {
    const replies = await withTimeout(this.deps.redis.multi().time().hgetall(this.key).exec(), LIST_TIMEOUT_MS, () => {
      throw new Error(`Redis did not answer for the node list within ${LIST_TIMEOUT_MS} ms`);
    });
    const failed = replies?.find(([err]) => err);
    if (!replies || failed) throw failed?.[0] ?? new Error('the node list transaction was aborted');
    const [seconds, micros] = replies[0]![1] as [string, string];
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const out: NodeStatus[] = [];
    const forgotten: string[] = [];
    for (const [field, text] of Object.entries(replies[1]![1] as Record<string, string>)) {
      const r = parseRecord(text);
      if (!r) continue;
      const ageMs = Math.max(0, now - r.heartbeat_ms);
      if (ageMs > FORGET_AFTER_MS) {
        forgotten.push(field);
        continue;
      }
      out.push({
        name: r.name, host: r.host, pid: r.pid, version: r.version, startedAt: r.started_at, heartbeatAt: r.heartbeat_ms, ageMs,
        alive: ageMs < ALIVE_INTERVALS * r.interval_ms, self: r.instance === this.instance,
        connections: r.connections, held: r.held, rates: r.rates,
        queues: r.queues.map(figures).filter((q): q is QueueFigures => q !== undefined),
      });
    }
    if (forgotten.length > 0) await this.deps.redis.hdel(this.key, ...forgotten);
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Stops beating and removes this node's entry, so the others see it gone rather than silent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    // Sent after any heartbeat in flight on the same connection, so Redis runs it last.
    const removed = this.deps.redis.eval(REMOVE, 1, this.key, this.name, this.instance).then(() => true);
    const done = await withTimeout(removed.catch(() => false), REMOVE_TIMEOUT_MS, () => false);
    if (!done) this.deps.log.warn({ event: 'node_remove_failed', node: this.name }, 'could not remove this node\'s heartbeat; others will see it silent');
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.after(this.interval, () => {
      this.beat().then(() => {
        if (this.failing) this.deps.log.info({ event: 'node_heartbeat_resumed', node: this.name }, 'heartbeats written again');
        this.failing = false;
      }, (err: Error) => {
        if (!this.failing) this.deps.log.warn({ event: 'node_heartbeat_failed', node: this.name, err: err.message }, 'heartbeat not written');
        this.failing = true;
      }).finally(() => this.schedule());
    });
  }

  /** Writes a heartbeat; returns the other live instance's record (and Redis's time) when the name is taken. */
  private async write(replace: string): Promise<{ record: NodeRecord | undefined; now: number } | undefined> {
    const r = this.deps.report();
    const table = this.deps.queues().sort((a, b) => weight(b) - weight(a)).slice(0, MAX_QUEUE_ROWS);
    // instance and interval_ms first: the script reads them from the start of the text.
    const record = JSON.stringify({
      instance: this.instance, interval_ms: this.interval, name: this.name, host: this.host, pid: process.pid, version: this.deps.version,
      started_at: this.startedAt, connections: r.connections, held: r.held, rates: r.rates,
      queues: table.map((q) => [q.domain, q.binding, q.ready, q.in_flight, q.connections, q.connecting]),
    });
    const taken = await this.deps.redis.eval(WRITE, 1, this.key, this.name, this.instance, record, replace) as [string, string] | null;
    return taken ? { record: parseRecord(taken[0]), now: Number(taken[1]) } : undefined;
  }

  /** The record is this node's own dead predecessor: same machine, its process gone (or this very pid, as in a container). */
  private isPredecessor(r: NodeRecord): boolean {
    return r.host === this.host && (r.pid === process.pid || !pidRuns(r.pid));
  }
}

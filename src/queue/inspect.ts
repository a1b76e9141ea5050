// Reads what waits in Redis for operators: per domain and binding counts of the delayed set and
// the wait list, and the job ids of one domain, over every shard (a domain's jobs are in one). The scan runs in short Lua chunks so a queue of a
// million jobs never blocks Redis for long; it reads only each job's name (its domain) and the
// binding fields of its data, so the delivery path pays nothing for it.
import type { Bindings } from '../binding/registry.js';
import { qidOfJob } from '../core/ids.js';
import type { RedisClient } from '../store/redis.js';
import { DELIVERY_QUEUE } from './job.js';
import type { Shard, ShardLayout } from './shards.js';

/** Jobs read per Lua call: a few milliseconds of Redis time. */
const CHUNK = 2000;

// KEYS[1]: the delayed zset or the wait list. ARGV: kind, cursor, count, job key prefix, domain
// filter ('' for all), mode ('tally' or 'ids'). The zset is walked by score, so jobs leaving it
// during the scan shift nothing; the cursor is the last score seen, kept as Redis's own string
// because Lua numbers would round it. The list is walked by index (the cursor is an offset).
// Returns { scanned, next cursor, out, group jobs }: in 'ids' mode out is ids; in 'tally' mode
// flattened (domain, binding, count, oldest id) aggregates, and group jobs (domain, group, id)
// apart because a group's binding is picked per message outside Redis.
const SCAN = `
local ids = {}
local cursor
if ARGV[1] == 'zset' then
  local r = redis.call('ZRANGE', KEYS[1], ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]), 'WITHSCORES')
  for i = 1, #r, 2 do ids[#ids + 1] = r[i]; cursor = '(' .. r[i + 1] end
else
  local first = tonumber(ARGV[2])
  ids = redis.call('LRANGE', KEYS[1], first, first + tonumber(ARGV[3]) - 1)
  cursor = tostring(first + #ids)
end
local filter = ARGV[5]
local out = {}
local groups = {}
local agg = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[4] .. id, 'name', 'data')
  local name = f[1]
  if name and (filter == '' or name == filter) then
    if ARGV[6] == 'ids' then
      out[#out + 1] = id
    else
      local data = f[2] or ''
      local group = string.match(data, '"bindingGroup":"([^"]*)"')
      if group then
        groups[#groups + 1] = name; groups[#groups + 1] = group; groups[#groups + 1] = id
      else
        local binding = string.match(data, '"binding":"([^"]*)"') or 'default'
        local key = name .. '\\0' .. binding
        local a = agg[key]
        if a then
          a[3] = a[3] + 1
          if id < a[4] then a[4] = id end
        else
          agg[key] = { name, binding, 1, id }
          out[#out + 1] = key
        end
      end
    end
  end
end
if ARGV[6] == 'ids' then return { #ids, cursor or '', out } end
local flat = {}
for _, key in ipairs(out) do
  local a = agg[key]
  flat[#flat + 1] = a[1]; flat[#flat + 1] = a[2]; flat[#flat + 1] = a[3]; flat[#flat + 1] = a[4]
end
return { #ids, cursor or '', flat, groups }`;

interface QueuedTally {
  domain: string;
  binding: string;
  delayed: number;
  waiting: number;
  /** The smallest job id: ids start with the time-ordered queue id, so this is the oldest. */
  oldestId: string;
}

type Field = 'delayed' | 'waiting' | 'active';
type Source<F extends Field = Field> = { base: string; key: string; kind: 'zset' | 'list'; field: F };

/** The key prefix of a shard's queue: its jobs' hashes and lists. */
function baseOf(shard: Shard): string {
  return `${shard.prefix}:${DELIVERY_QUEUE}:`;
}

export class QueueInspector {
  constructor(private readonly redis: RedisClient, private readonly layout: ShardLayout, private readonly bindings: Bindings) {}

  /** Where mail waits in Redis: what mailq counts; of the shard holding `domain`'s mail, or of all. */
  private sources(domain: string | undefined): Array<Source<'delayed' | 'waiting'>> {
    return (domain === undefined ? this.layout.shards : [this.layout.of(domain)]).flatMap((shard) => {
      const base = baseOf(shard);
      return [
        { base, key: `${base}delayed`, kind: 'zset' as const, field: 'delayed' as const },
        { base, key: `${base}wait`, kind: 'list' as const, field: 'waiting' as const },
      ];
    });
  }

  /** Jobs due now (wait lists) and waiting for a time (delayed sets), all shards together. */
  async counts(): Promise<{ waiting: number; delayed: number }> {
    const per = await Promise.all(this.layout.shards.map(async (shard) => {
      const [delayed, waiting] = await Promise.all([this.redis.zcard(`${baseOf(shard)}delayed`), this.redis.llen(`${baseOf(shard)}wait`)]);
      return { delayed, waiting };
    }));
    return { waiting: per.reduce((n, p) => n + p.waiting, 0), delayed: per.reduce((n, p) => n + p.delayed, 0) };
  }

  /** When a delayed job of the shard is due, or undefined when it is not in the delayed set. */
  async dueAt(shard: Shard, jobId: string): Promise<number | undefined> {
    const score = await this.redis.zscore(`${baseOf(shard)}delayed`, jobId);
    // BullMQ scores delayed jobs as timestamp × 0x1000 plus a tie-breaking counter.
    return score === null ? undefined : Math.floor(Number(score) / 0x1000);
  }

  /** Delayed and waiting jobs per (domain, binding), optionally of one domain. */
  async tally(domain?: string): Promise<QueuedTally[]> {
    const rows = new Map<string, QueuedTally>();
    const add = (d: string, binding: string, field: 'delayed' | 'waiting', n: number, id: string) => {
      const key = `${d}\u0000${binding}`;
      const row = rows.get(key) ?? { domain: d, binding, delayed: 0, waiting: 0, oldestId: id };
      row[field] += n;
      if (id < row.oldestId) row.oldestId = id;
      rows.set(key, row);
    };
    for (const src of this.sources(domain)) {
      await this.walk(src, domain, 'tally', (chunk) => {
        const [flat, groups] = chunk as [Array<string | number>, string[]];
        for (let i = 0; i < flat.length; i += 4) add(String(flat[i]), String(flat[i + 1]), src.field, Number(flat[i + 2]), String(flat[i + 3]));
        for (let i = 0; i < groups.length; i += 3) {
          const id = groups[i + 2]!;
          add(groups[i]!, this.bindings.resolve({ group: groups[i + 1] }, qidOfJob(id)).name, src.field, 1, id);
        }
      });
    }
    return [...rows.values()];
  }

  /** Ids of the delayed, waiting and active (held by a worker) jobs of one domain, all in the domain's shard. */
  async idsOf(domain: string): Promise<{ delayed: string[]; waiting: string[]; active: string[] }> {
    const out = { delayed: new Set<string>(), waiting: new Set<string>(), active: new Set<string>() };
    const base = baseOf(this.layout.of(domain));
    const active: Source = { base, key: `${base}active`, kind: 'list', field: 'active' };
    for (const src of [...this.sources(domain), active]) {
      await this.walk(src, domain, 'ids', ([ids]) => {
        for (const id of ids as string[]) out[src.field].add(id);
      });
    }
    return { delayed: [...out.delayed], waiting: [...out.waiting], active: [...out.active] };
  }

  private async walk(src: Source, domain: string | undefined, mode: 'tally' | 'ids', take: (chunk: unknown[]) => void): Promise<void> {
    let cursor = src.kind === 'zset' ? '-inf' : '0';
    for (;;) {
      const [scanned, next, ...chunk] = await this.redis.eval(SCAN, 1, src.key, src.kind, cursor, CHUNK, src.base, domain ?? '', mode) as [number, string, ...unknown[]];
      take(chunk);
      if (scanned < CHUNK) return;
      cursor = next;
    }
  }
}

// cluster_outbound_throttle_messages / _connections: one budget for the whole cluster, kept in Redis as GCRA.
// The state is one number per key, the theoretical arrival time (TAT), judged by Redis's clock
// since the nodes' clocks may differ. The burst tolerance is one event: events are paced one per
// perMs / count, so no window of perMs ever holds more than count, as with the node-local sliding
// log (scheduler/throttle.ts); a burst of count would let a window hold 2 × count − 1 right after
// idleness, and receivers count over their own sliding windows. The key expires when its TAT
// passes: it would read as absent anyway. One EVALSHA per take or wait.
import type { RedisClient } from '../store/redis.js';
import { scriptCommand } from '../store/script-command.js';
import type { Rate } from '../config/units.js';

// KEYS[1] the TAT in µs; ARGV: emission interval in µs, burst tolerance in µs, '1' to
// take an event or '0' only to ask. 0 when allowed, else the ms until an event is, rounded up so
// that asking again then is never too early. Whole microseconds keep the sums exact in Lua's
// doubles (about 1.7e15 now, under 2^53): fractional milliseconds would refuse the last event of
// a burst for a rounding error. PX is formatted as an integer, which Redis requires.
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now) + interval
local allowedAt = tat - tonumber(ARGV[2])
if allowedAt > now then return math.ceil((allowedAt - now) / 1000) end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', math.ceil((tat - now) / 1000)))
end
return 0`;

type GcraArgs = [key: string, intervalUs: number, toleranceUs: number, take: '0' | '1'];

export class ClusterThrottles {
  private readonly gcra: (...args: GcraArgs) => Promise<number>;

  constructor(redis: RedisClient, private readonly prefix: string) {
    this.gcra = scriptCommand<GcraArgs, number>(redis, 'impulseClusterThrottle', GCRA, 1);
  }

  /** Takes one event of `key` under `rate` if one is allowed now: resolves 0; else the ms until one is, taking nothing. */
  take(key: string, rate: Rate): Promise<number> {
    return this.run(key, rate, '1');
  }

  /** Ms until an event is allowed, taking nothing. */
  wait(key: string, rate: Rate): Promise<number> {
    return this.run(key, rate, '0');
  }

  private run(key: string, rate: Rate, take: '0' | '1'): Promise<number> {
    // Rounded up to a whole µs: when perMs does not divide by count the rate comes out a hair
    // slower, never faster.
    const intervalUs = Math.ceil((rate.perMs * 1000) / rate.count);
    return this.gcra(`${this.prefix}:throttle:${key}`, intervalUs, intervalUs, take);
  }
}

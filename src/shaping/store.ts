// Shaping actions kept in Redis with their end, so they outlast a restart and hold for every
// daemon on the same Redis: one hash, a field per action, its value the action as JSON.
import type { RedisClient } from '../store/redis.js';
import type { ShapingAction } from './action.js';

export interface ShapingStore {
  /** Every stored action still in force at `now`; ended ones are removed on the way. */
  load(now: number): Promise<ShapingAction[]>;
  save(action: ShapingAction): Promise<void>;
  remove(id: string): Promise<void>;
}

function isAction(v: unknown): v is ShapingAction {
  const a = v as Partial<ShapingAction> | null;
  return typeof a === 'object' && a !== null && typeof a.id === 'string' && typeof a.rule === 'string' && typeof a.until === 'number'
    && typeof a.since === 'number' && typeof a.action === 'string' && typeof a.target === 'object' && a.target !== null;
}

export class RedisShapingStore implements ShapingStore {
  private readonly key: string;

  constructor(private readonly redis: RedisClient, prefix: string) {
    this.key = `${prefix}:shaping`;
  }

  async load(now: number): Promise<ShapingAction[]> {
    const all = await this.redis.hgetall(this.key);
    const live: ShapingAction[] = [];
    const ended: string[] = [];
    for (const [id, text] of Object.entries(all)) {
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        v = undefined;
      }
      if (isAction(v) && v.until > now) live.push(v);
      else ended.push(id);
    }
    if (ended.length > 0) await this.redis.hdel(this.key, ...ended);
    return live;
  }

  async save(action: ShapingAction): Promise<void> {
    await this.redis.hset(this.key, action.id, JSON.stringify(action));
  }

  async remove(id: string): Promise<void> {
    await this.redis.hdel(this.key, id);
  }
}

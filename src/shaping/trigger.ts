// How many matching replies a rule has seen per scope, so "3/5m" acts on the third within five
// minutes. Pure bookkeeping over the times given, so tests drive it with plain numbers.
import type { Trigger } from '../config/units.js';

/** Forgets a window once it is this large, so a rule matching everything cannot grow it without end. */
const MAX_KEYS = 100_000;

export class TriggerCounts {
  private readonly hits = new Map<string, number[]>();

  /** Counts a matching reply at `now`; true when it completes the trigger (the count then starts again). */
  hit(key: string, trigger: Trigger, now: number): boolean {
    if (trigger.count <= 1) return true;
    const kept = (this.hits.get(key) ?? []).filter((t) => trigger.perMs === undefined || t > now - trigger.perMs);
    kept.push(now);
    if (kept.length >= trigger.count) {
      this.hits.delete(key);
      return true;
    }
    if (this.hits.size >= MAX_KEYS && !this.hits.has(key)) this.hits.clear();
    this.hits.set(key, kept);
    return false;
  }

  clear(): void {
    this.hits.clear();
  }
}

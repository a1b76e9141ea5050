// outbound_throttle_messages / outbound_throttle_connections: at most N events in any window of
// S. A throttle belongs to the scope that defines it, so every pair falling back to that scope
// draws on one budget (Momentum's "throttles are by reference").
import type { Rate } from '../config/units.js';

export class Throttle {
  /** Times of the last `count` events, oldest first. */
  private readonly times: number[];

  constructor(readonly rate: Rate, earlier: readonly number[] = []) {
    this.times = earlier.slice(-rate.count);
  }

  /** Milliseconds until an event is allowed; 0 when one is allowed now. */
  wait(now: number): number {
    if (this.times.length < this.rate.count) return 0;
    return Math.max(0, this.times[0]! + this.rate.perMs - now);
  }

  /** The events counted, oldest first. */
  get events(): readonly number[] {
    return this.times;
  }

  take(now: number): void {
    this.times.push(now);
    if (this.times.length > this.rate.count) this.times.shift();
  }
}

export class Throttles {
  private readonly byScope = new Map<string, Throttle>();

  /**
   * The shared throttle of `scope`. A changed rate (a reload, an adaptive step, a shaping overlay)
   * keeps the events already counted, so a change never grants a fresh burst on top of them.
   */
  get(scope: string, rate: Rate | undefined): Throttle | undefined {
    if (!rate) return undefined;
    let t = this.byScope.get(scope);
    if (!t || t.rate.count !== rate.count || t.rate.perMs !== rate.perMs) {
      t = new Throttle(rate, t?.events ?? []);
      this.byScope.set(scope, t);
    }
    return t;
  }
}

// outbound_throttle_messages / outbound_throttle_connections: at most N events in any window of
// S. A throttle belongs to the scope that defines it, so every pair falling back to that scope
// draws on one budget (Momentum's "throttles are by reference").
import type { Rate } from '../config/units.js';

export class Throttle {
  /** Times of the last `count` events, oldest first. */
  private readonly times: number[] = [];

  constructor(readonly rate: Rate) {}

  /** Milliseconds until an event is allowed; 0 when one is allowed now. */
  wait(now: number): number {
    if (this.times.length < this.rate.count) return 0;
    return Math.max(0, this.times[0]! + this.rate.perMs - now);
  }

  take(now: number): void {
    this.times.push(now);
    if (this.times.length > this.rate.count) this.times.shift();
  }
}

export class Throttles {
  private readonly byScope = new Map<string, Throttle>();

  /** The shared throttle of `scope`; a changed rate (after a reload) starts a new budget. */
  get(scope: string, rate: Rate | undefined): Throttle | undefined {
    if (!rate) return undefined;
    const key = `${scope}\u0000${rate.count}/${rate.perMs}`;
    let t = this.byScope.get(key);
    if (!t) {
      t = new Throttle(rate);
      this.byScope.set(key, t);
    }
    return t;
  }
}

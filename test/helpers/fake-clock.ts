// A clock the test moves by hand: timers fire in time order as it advances, `soon` callbacks run
// as it settles, and promise reactions run in between, so the scheduler runs exactly and fast.
import type { Clock, Timer } from '../../src/core/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: Pending[] = [];
  private immediates: Array<() => void> = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): Timer {
    const timer: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  soon(fn: () => void): void {
    this.immediates.push(fn);
  }

  /** Runs everything due now (soon callbacks, timers due, promise reactions) until nothing is left. */
  async settle(): Promise<void> {
    for (let rounds = 0; rounds < 100_000; rounds++) {
      await turn();
      const due = this.takeDue(this.t);
      if (due) {
        due.fn();
        continue;
      }
      if (this.immediates.length === 0) return;
      const batch = this.immediates;
      this.immediates = [];
      for (const fn of batch) fn();
    }
    throw new Error('the fake clock never settled: something reschedules itself at once');
  }

  /** Moves time forward by `ms`, each timer firing at its own time with everything it causes settled. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await this.settle();
    for (;;) {
      const next = this.takeDue(end);
      if (!next) break;
      this.t = Math.max(this.t, next.at);
      next.fn();
      await this.settle();
    }
    this.t = end;
    await this.settle();
  }

  /** Advances in steps of `stepMs` until `done` holds, at most `limitMs`; returns the time it took. */
  async until(done: () => boolean, limitMs: number, stepMs = 10): Promise<number> {
    const start = this.t;
    await this.settle();
    while (!done()) {
      if (this.t - start >= limitMs) throw new Error(`condition not reached within ${limitMs} ms of fake time`);
      await this.advance(stepMs);
    }
    return this.t - start;
  }

  private takeDue(at: number): Pending | undefined {
    this.timers = this.timers.filter((t) => !t.cancelled);
    let best: Pending | undefined;
    for (const t of this.timers) if (t.at <= at && (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq))) best = t;
    if (best) this.timers.splice(this.timers.indexOf(best), 1);
    return best;
  }
}

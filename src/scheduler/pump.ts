// The one place the scheduler's work runs: events mark ready queues dirty, and once per turn of
// the event loop the dirty set is drained, each queue once, so no event re-enters the maintainer.
import type { Clock } from '../core/clock.js';

export class Pump<T> {
  private dirty = new Set<T>();
  private queued = false;

  /** `drain` gets the queues marked since the last run (possibly none, after a kick). */
  constructor(private readonly clock: Pick<Clock, 'soon'>, private readonly drain: (dirty: ReadonlySet<T>) => void) {}

  mark(item: T): void {
    this.dirty.add(item);
    this.kick();
  }

  /** Runs the drain at the end of this turn even with nothing marked. */
  kick(): void {
    if (this.queued) return;
    this.queued = true;
    this.clock.soon(() => this.run());
  }

  private run(): void {
    this.queued = false;
    const dirty = this.dirty;
    // Marks made while draining land in the next run.
    this.dirty = new Set();
    this.drain(dirty);
  }
}

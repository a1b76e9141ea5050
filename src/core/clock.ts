// Time as a dependency: the time now, timers and the end of the current turn of the event loop,
// so retry and expiry policy and the whole scheduler run exactly on a fake clock in tests.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /** Calls `fn` once, `ms` from now. A pending timer never keeps the process alive. */
  after(ms: number, fn: () => void): Timer;
  /** Calls `fn` once the current turn of the event loop is over (its I/O callbacks included). */
  soon(fn: () => void): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  soon(fn) {
    setImmediate(fn);
  },
};

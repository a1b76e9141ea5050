// Time as a dependency, so retry and expiry policy can be tested exactly.
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

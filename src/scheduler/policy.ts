// Pure scheduling policy: how many connections a queue deserves, how much room the caps leave,
// and how long mail that finds its queue full waits before it is looked at again.

export type Aggressiveness = 'normal' | 'high';

/** Active-queue size at which the goal reaches 63% of the limit (Momentum's curve, fitted). */
const GOAL_SCALE: Record<Aggressiveness, number> = { normal: 100, high: 40 };

/** Connections a binding × domain queue should have for `ready` messages, up to `limit`. */
export function connectionGoal(ready: number, limit: number, aggressiveness: Aggressiveness): number {
  if (ready <= 0) return 0;
  return Math.min(limit, Math.max(1, Math.ceil(limit * (1 - Math.exp(-ready / GOAL_SCALE[aggressiveness])))));
}

export interface Caps {
  goal: number;
  /** Open and opening connections of the binding × domain pair. */
  pair: number;
  /** Connections counted by scope_max_outbound_connections, and that limit. */
  scope: number;
  scopeMax: number | undefined;
  server: number;
  serverMax: number;
}

/** New connections the pair may open now without passing its goal or any cap. */
export function roomForConnections(c: Caps): number {
  const scopeRoom = c.scopeMax === undefined ? Number.POSITIVE_INFINITY : c.scopeMax - c.scope;
  return Math.max(0, Math.min(c.goal - c.pair, scopeRoom, c.serverMax - c.server));
}

export const MIN_PARK_MS = 1_000;
export const MAX_PARK_MS = 300_000;
/** A queue that delivers nothing is still assumed to drain this fast, so parks stay finite. */
const FLOOR_RATE_PER_S = 1;

/**
 * How long mail that found its active queue full waits in Redis before it is read again: the
 * time the queue needs to drain the mail already parked ahead of it, spread at random over the
 * second half of that span so a large backlog comes back as a trickle, not a wave.
 */
export function parkDelay(parkedAhead: number, drainPerSecond: number, random: number): number {
  const span = (parkedAhead / Math.max(drainPerSecond, FLOOR_RATE_PER_S)) * 1000;
  const bounded = Math.min(Math.max(span, MIN_PARK_MS), MAX_PARK_MS);
  return Math.round(bounded * (0.5 + random / 2));
}

// Pure scheduling policy: how many connections a queue deserves, how much room the caps leave,
// and how much parked mail a queue calls back.

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

/**
 * Parked jobs a queue promotes now: none while it still holds more than half of max_ready
 * (counting promoted jobs on their way), else enough to fill it, within what the window has left.
 */
export function refillCount(q: { ready: number; incoming: number; maxReady: number; windowRoom: number }): number {
  const queued = q.ready + q.incoming;
  if (queued > q.maxReady / 2) return 0;
  return Math.max(0, Math.min(q.maxReady - queued, q.windowRoom));
}

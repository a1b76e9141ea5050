// Pure scheduling policy: whether a job is held or parked, how many connections a queue deserves,
// how much room the caps leave, and how much parked mail a queue calls back.
import type { ParkReason } from './entry.js';

type Aggressiveness = 'normal' | 'high';

/** Active-queue size at which the goal reaches 63% of the limit (Momentum's curve, fitted). */
const GOAL_SCALE: Record<Aggressiveness, number> = { normal: 100, high: 40 };

/**
 * Connections a ready queue (or a site) should have for `backlog` messages, up to `limit`, and
 * never more than there are messages: under a limit of a few hundred the curve's first points
 * would otherwise open connections with nothing to carry.
 */
export function connectionGoal(backlog: number, limit: number, aggressiveness: Aggressiveness): number {
  if (backlog <= 0) return 0;
  return Math.min(limit, backlog, Math.max(1, Math.ceil(limit * (1 - Math.exp(-backlog / GOAL_SCALE[aggressiveness])))));
}

interface Caps {
  goal: number;
  /** Open and opening connections of the ready queue. */
  queue: number;
  /** Connections counted by scope_max_outbound_connections, and that limit. */
  scope: number;
  scopeMax: number | undefined;
  server: number;
  serverMax: number;
}

/** New connections the queue may open now without passing its goal or any cap. */
export function roomForConnections(c: Caps): number {
  const scopeRoom = c.scopeMax === undefined ? Number.POSITIVE_INFINITY : c.scopeMax - c.scope;
  return Math.max(0, Math.min(c.goal - c.queue, scopeRoom, c.serverMax - c.server));
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

/**
 * How long a job parked for a full queue or a suspension waits if its promotion never comes (its
 * id was lost to a crash between two writes). Promotion, not this, is what brings parked mail back.
 */
export const PARK_FALLBACK_MS = 3_600_000;
/**
 * Share of the window kept for queues that hold little: past it, a queue holding
 * RESERVED_QUEUE_FLOOR or more parks new mail, so a few full queues never starve the rest.
 */
const WINDOW_RESERVE = 0.1;
const RESERVED_QUEUE_FLOOR = 10;

/** Jobs held at most before queues holding RESERVED_QUEUE_FLOOR or more park new mail. */
export function windowLimit(maxHeld: number): number {
  return Math.floor(maxHeld * (1 - WINDOW_RESERVE));
}

export interface AdmissionFacts {
  now: number;
  stopping: boolean;
  /** The domain or the binding is suspended. */
  suspended: boolean;
  /** The end of a shaping suspension over the queue, if one is in force. */
  shapedUntil: number | undefined;
  /** The end of the domain's delay, if it is delayed. */
  delayedUntil: number | undefined;
  /** Held in the queue now, and its max_ready. */
  ready: number;
  maxReady: number;
  /** Held in all queues, and the window's limit. */
  held: number;
  windowLimit: number;
  suspendedRecheck: number;
}

/**
 * Hold the job, or park it until `until`. A park that is `filed` goes into its queue's parked set
 * in Redis and is promoted when the queue has room (`until` is then only a fallback); the others
 * come back at `until` (the delay's end, or at once after a restart).
 */
export type Admission = { kind: 'hold' } | { kind: 'park'; reason: ParkReason; until: number; filed: boolean };

export function admission(f: AdmissionFacts): Admission {
  if (f.stopping) return { kind: 'park', reason: 'stopping', until: f.now, filed: false };
  if (f.suspended) return { kind: 'park', reason: 'suspended', until: f.now + f.suspendedRecheck, filed: true };
  if (f.shapedUntil !== undefined) return { kind: 'park', reason: 'shaping suspended', until: f.shapedUntil, filed: true };
  if (f.delayedUntil !== undefined) return { kind: 'park', reason: 'domain delayed', until: f.delayedUntil, filed: false };
  const windowTight = f.held >= f.windowLimit && f.ready >= RESERVED_QUEUE_FLOOR;
  if (f.ready >= f.maxReady || windowTight) return { kind: 'park', reason: 'active queue full', until: f.now + PARK_FALLBACK_MS, filed: true };
  return { kind: 'hold' };
}

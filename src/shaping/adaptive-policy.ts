// Adaptive limits (Momentum's Adaptive Delivery) as pure policy: which replies are rate or
// reputation signals, and how a binding × domain's limits step down on one and back up after a
// clean period, always within the operator's bounds.
import type { Rate } from '../config/units.js';
import type { Reply } from '../core/reply.js';

/** Bounds per option, [lowest, highest], and how often the limits may move each way. */
export interface AdaptiveBounds {
  max_outbound_connections?: readonly [number, number] | undefined;
  max_deliveries_per_connection?: readonly [number, number] | undefined;
  outbound_throttle_messages?: readonly [Rate, Rate] | undefined;
  step_down_interval: number;
  step_up_interval: number;
}

/** The limits in force; the throttle kept as messages per second so it can move by fractions. */
export interface AdaptiveValues {
  connections?: number | undefined;
  deliveries?: number | undefined;
  perSecond?: number | undefined;
}

/** Down by a quarter, up by a twentieth: a cut below the receiver's rate, then a slow climb back (AIMD-like, gentler). */
const DOWN = 0.75;
const UP = 1.05;

const perSecond = (r: Rate) => (r.count * 1000) / r.perMs;
const clamp = (v: number, [lo, hi]: readonly [number, number]) => Math.min(hi, Math.max(lo, v));

/** Momentum's block classes (mail block, spam block, spam content), and texts receivers use to say "slow down". */
const SIGNAL_CLASSES = new Set([50, 51, 52]);
const RATE_TEXT = /rate[ -]?limit|unusual rate|too (many|fast|quickly)|unexpected volume|\bRP-00\d\b|\[TSS?0\d\]/i;

/** A deferral that asks the sender to slow down: a receiver's 4xx of a block class or in words about rate or volume. */
export function isRateSignal(r: Reply, bounceClass: number): boolean {
  if (r.code < 400 || r.code >= 500 || r.text.startsWith('[internal]')) return false;
  return SIGNAL_CLASSES.has(bounceClass) || RATE_TEXT.test(r.text);
}

/** Where a queue starts: at the top of every bound, as configured limits would put it. */
export function initialValues(b: AdaptiveBounds): AdaptiveValues {
  return {
    connections: b.max_outbound_connections?.[1],
    deliveries: b.max_deliveries_per_connection?.[1],
    perSecond: b.outbound_throttle_messages ? perSecond(b.outbound_throttle_messages[1]) : undefined,
  };
}

export function stepDown(v: AdaptiveValues, b: AdaptiveBounds): AdaptiveValues {
  return {
    connections: b.max_outbound_connections && v.connections !== undefined ? clamp(Math.floor(v.connections * DOWN), b.max_outbound_connections) : v.connections,
    deliveries: b.max_deliveries_per_connection && v.deliveries !== undefined ? clamp(Math.floor(v.deliveries * DOWN), b.max_deliveries_per_connection) : v.deliveries,
    perSecond: b.outbound_throttle_messages && v.perSecond !== undefined
      ? clamp(v.perSecond * DOWN, [perSecond(b.outbound_throttle_messages[0]), perSecond(b.outbound_throttle_messages[1])]) : v.perSecond,
  };
}

export function stepUp(v: AdaptiveValues, b: AdaptiveBounds): AdaptiveValues {
  return {
    connections: b.max_outbound_connections && v.connections !== undefined ? clamp(v.connections + 1, b.max_outbound_connections) : v.connections,
    deliveries: b.max_deliveries_per_connection && v.deliveries !== undefined ? clamp(Math.ceil(v.deliveries * UP), b.max_deliveries_per_connection) : v.deliveries,
    perSecond: b.outbound_throttle_messages && v.perSecond !== undefined
      ? clamp(v.perSecond * UP, [perSecond(b.outbound_throttle_messages[0]), perSecond(b.outbound_throttle_messages[1])]) : v.perSecond,
  };
}

/**
 * A rate in messages per second as a throttle of one message per interval: evenly spaced, since
 * "N per second" lets N go at once, and a receiver counting over its own sliding second then sees
 * two bursts in one window and defers well below N.
 */
export function throttleOf(messagesPerSecond: number): Rate {
  return { count: 1, perMs: Math.max(1, Math.round(1000 / messagesPerSecond)) };
}

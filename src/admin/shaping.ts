// The admin API's shaping side: the actions in force, as operators read them, and clearing them.
import type { ShapingAction } from '../shaping/action.js';
import { targetFields } from '../shaping/rule.js';
import type { ShapingFilter } from '../shaping/shaper.js';
import type { AdminContext } from './context.js';
import type { ShapingCleared, ShapingList, ShapingView } from './protocol.js';

const iso = (ms: number) => new Date(ms).toISOString();

/** An option value as the daemon holds it, in a form JSON and a terminal carry: a throttle as count/seconds. */
function shown(v: unknown): string | number | boolean {
  if (typeof v === 'object' && v !== null && 'count' in v && 'perMs' in v) return `${String(v.count)}/${Number(v.perMs) / 1000}`;
  return typeof v === 'number' || typeof v === 'boolean' ? v : String(v);
}

export function shapingView(a: ShapingAction, now: number): ShapingView {
  return {
    id: a.id, rule: a.rule, action: a.action, ...targetFields(a.target),
    ...(a.options ? { options: Object.fromEntries(Object.entries(a.options).map(([k, v]) => [k, shown(v)])) } : {}),
    since: iso(a.since), until: iso(a.until), remaining_s: Math.max(0, Math.round((a.until - now) / 1000)), reply: a.reply,
  };
}

export function shapingList(ctx: AdminContext): ShapingList {
  const now = ctx.clock.now();
  return { actions: ctx.shaping.active().map((a) => shapingView(a, now)) };
}

export function clearShaping(ctx: AdminContext, filter: ShapingFilter): ShapingCleared {
  const now = ctx.clock.now();
  return { cleared: ctx.shaping.clear(filter).map((a) => shapingView(a, now)) };
}

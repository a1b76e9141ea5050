// The read side of `impulse top`: per binding × domain, this node's outcomes per second over the
// last minute beside what mailq shows (held and delayed mail, connections, the oldest message) and
// the shaping actions holding the pair.
import type { AdminContext } from './context.js';
import type { Top, TopRow } from './protocol.js';
import { mailq } from './views.js';

export async function top(ctx: AdminContext, limit: number): Promise<Top> {
  const rows = new Map<string, TopRow>();
  const row = (domain: string, binding: string): TopRow => {
    const key = `${domain}\u0000${binding}`;
    let r = rows.get(key);
    if (!r) {
      r = { domain, binding, delivered_per_s: 0, deferred_per_s: 0, failed_per_s: 0, active: 0, delayed: 0, connections: 0, shaping: [] };
      rows.set(key, r);
    }
    return r;
  };
  for (const q of (await mailq(ctx, { limit: Number.MAX_SAFE_INTEGER })).rows) {
    Object.assign(row(q.domain, q.binding), { active: q.active, delayed: q.delayed, connections: q.connections }, q.oldest_age_s === undefined ? {} : { oldest_age_s: q.oldest_age_s });
  }
  for (const p of ctx.pairRates.rates()) {
    Object.assign(row(p.domain, p.binding), { delivered_per_s: p.delivered, deferred_per_s: p.deferred, failed_per_s: p.failed });
  }
  for (const r of rows.values()) {
    const covering = ctx.shaping.covering({ binding: r.binding, domain: r.domain, mxHosts: ctx.scheduler.mxHostsOf(r.domain) });
    r.shaping = covering.map((a) => `${a.rule}:${a.action}`);
  }
  const all = [...rows.values()].sort((a, b) => b.active - a.active || b.delivered_per_s - a.delivered_per_s || a.domain.localeCompare(b.domain));
  return { node: ctx.nodes.name, total_rows: all.length, rows: all.slice(0, limit) };
}

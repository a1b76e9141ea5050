// The read side of the admin API: summary, mailq and one domain, joined from the scheduler's
// memory (what is held and connected now), Redis (what waits there) and the other nodes'
// heartbeats (what they hold and have open).
import type { NodeStatus, QueueFigures } from '../cluster/nodes.js';
import { queueIdTime } from '../core/ids.js';
import { explainOptions } from '../config/scopes.js';
import { flagNames } from '../delivery/flags.js';
import type { DomainView } from '../scheduler/views.js';
import { targetCovers } from '../shaping/rule.js';
import type { AdminContext } from './context.js';
import type { DomainDetail, Mailq, MailqRow, NodeSummary, Summary, WebhookSummary } from './protocol.js';
import { shapingView } from './shaping.js';

export class NotFound extends Error {}

const iso = (ms: number) => new Date(ms).toISOString();

function nodeSummary(n: NodeStatus): NodeSummary {
  return {
    name: n.name, host: n.host, pid: n.pid, version: n.version, started_at: iso(n.startedAt), alive: n.alive,
    last_heartbeat: iso(n.heartbeatAt), age_s: Math.round(n.ageMs / 100) / 10, connections: n.connections, held: n.held, rates: n.rates,
  };
}

/** The ready queues other live nodes reported at their last heartbeat; this node's own come from its memory, never twice. */
async function otherNodes(ctx: AdminContext, domain: string | undefined): Promise<Array<QueueFigures & { node: string }>> {
  return (await ctx.nodes.list()).filter((n) => n.alive && !n.self)
    .flatMap((n) => n.queues.filter((q) => domain === undefined || q.domain === domain).map((q) => ({ node: n.name, ...q })));
}

export async function summary(ctx: AdminContext): Promise<Summary> {
  const now = ctx.clock.now();
  const totals = ctx.scheduler.totals();
  const queued = await ctx.inspector.counts();
  const nodes = await ctx.nodes.list();
  return {
    version: ctx.version,
    hostname: ctx.config().config.hostname,
    node: ctx.nodes.name,
    started_at: iso(ctx.startedAt),
    uptime_s: Math.round((now - ctx.startedAt) / 1000),
    connections: { inbound: ctx.inbound(), outbound: totals.connections, connecting: totals.connecting },
    queue: { active: totals.held, delayed: queued.delayed, waiting: queued.waiting },
    active_domains: totals.activeDomains,
    counts: ctx.counts.counts(),
    rates: ctx.counts.rates(),
    suspended: { domains: ctx.scheduler.suspendedDomains(), bindings: ctx.bindings.suspendedNames() },
    nodes: nodes.map(nodeSummary),
    webhooks: (await ctx.webhooks.status()).map((w): WebhookSummary => ({
      name: w.name, url: w.url, queued: w.queued, oldest_age_s: w.oldest === undefined ? null : Math.max(0, Math.round((now - w.oldest) / 1000)), state: w.state,
      ...(w.state === 'failing' ? { failing_since: iso(w.since), failures: w.failures, last_reply: w.reply } : {}),
    })),
  };
}

/** Age in seconds of the message whose queue id starts with `id`'s time. */
function ageOf(id: string | undefined, now: number): number | undefined {
  const t = id === undefined ? NaN : queueIdTime(id);
  return Number.isNaN(t) ? undefined : Math.max(0, Math.round((now - t) / 1000));
}

export async function mailq(ctx: AdminContext, filter: { domain?: string; binding?: string; limit: number }): Promise<Mailq> {
  const now = ctx.clock.now();
  const rows = new Map<string, MailqRow & { oldest?: string }>();
  const row = (domain: string, binding: string) => {
    const key = `${domain}\u0000${binding}`;
    let r = rows.get(key);
    if (!r) {
      r = { domain, binding, active: 0, delayed: 0, connections: 0 };
      rows.set(key, r);
    }
    return r;
  };
  const older = (a: string | undefined, b: string | undefined) => (a === undefined || (b !== undefined && b < a) ? b : a);
  const lastErrors = new Map<string, MailqRow['last_error']>();
  for (const d of ctx.scheduler.state(filter.domain).domains) {
    if (d.last_error) lastErrors.set(d.domain, d.last_error);
    for (const b of d.bindings) {
      if (b.ready + b.in_flight + b.connections === 0) continue;
      const r = row(d.domain, b.binding);
      r.active += b.ready + b.in_flight;
      r.connections += b.connections;
      r.oldest = older(r.oldest, b.oldest);
    }
  }
  for (const t of await ctx.inspector.tally(filter.domain)) {
    const r = row(t.domain, t.binding);
    // Due now but not yet taken by the scheduler: active in Momentum's sense.
    r.active += t.waiting;
    r.delayed += t.delayed;
    r.oldest = older(r.oldest, t.oldestId);
  }
  for (const o of await otherNodes(ctx, filter.domain)) {
    const r = row(o.domain, o.binding);
    r.active += o.ready + o.in_flight;
    r.connections += o.connections;
  }
  for (const r of rows.values()) {
    const last = lastErrors.get(r.domain);
    if (last) r.last_error = last;
  }
  const all = [...rows.values()]
    .filter((r) => filter.binding === undefined || r.binding === filter.binding)
    .sort((a, b) => b.active + b.delayed - (a.active + a.delayed) || a.domain.localeCompare(b.domain));
  return {
    total_rows: all.length,
    rows: all.slice(0, filter.limit).map(({ oldest, ...r }) => {
      const age = ageOf(oldest, now);
      return age === undefined ? r : { ...r, oldest_age_s: age };
    }),
  };
}

/** Other domains whose MX list names this host or one of its addresses. */
function siblingsOf(host: string, addresses: string[], self: string, all: DomainView[]): string[] {
  return all.filter((o) => o.domain !== self && (o.mx.hosts ?? []).some((h) => h.host === host || addresses.includes(h.address)))
    .map((o) => o.domain);
}

export async function domainDetail(ctx: AdminContext, domain: string): Promise<DomainDetail> {
  const now = ctx.clock.now();
  const all = ctx.scheduler.state().domains;
  const view = all.find((d) => d.domain === domain);
  const queued = (await ctx.inspector.tally(domain));
  const others = await otherNodes(ctx, domain);
  if (!view && queued.length === 0 && others.length === 0) throw new NotFound(`no mail queued for ${domain} and no state kept for it`);
  const { document } = ctx.config();
  const hosts = new Map<string, { host: string; preference: number; addresses: string[] }>();
  for (const h of view?.mx.hosts ?? []) {
    const entry = hosts.get(h.host) ?? { host: h.host, preference: h.preference, addresses: [] };
    entry.addresses.push(h.address);
    hosts.set(h.host, entry);
  }
  const bindingNames = ctx.bindings.names();
  const mxHosts = [...hosts.keys()].map((h) => h.toLowerCase());
  const covering = [...new Map(bindingNames.flatMap((b) => ctx.shaping.covering({ binding: b, domain, mxHosts })).map((a) => [a.id, a])).values()];
  const bindings = new Map((view?.bindings ?? []).map((b) => [b.binding, b]));
  const pair = (binding: string) => {
    let b = bindings.get(binding);
    if (!b) {
      b = {
        binding, suspended: ctx.bindings.isSuspended(binding), phase: 'idle', ready: 0, in_flight: 0, connections: 0, connecting: 0, idle: 0,
        throttled_ms: { messages: 0, connections: 0 },
      };
      bindings.set(binding, b);
    }
    return b;
  };
  for (const t of queued) pair(t.binding);
  for (const o of others) {
    const b = pair(o.binding);
    b.ready += o.ready;
    b.in_flight += o.in_flight;
    b.connections += o.connections;
    b.connecting += o.connecting;
  }
  return {
    domain,
    phase: view?.phase ?? 'idle',
    ...(view?.delayed_until ? { delayed_until: view.delayed_until } : {}),
    mx: {
      phase: view?.mx.phase ?? 'unknown',
      ...(view?.mx.expires_at ? { expires_at: view.mx.expires_at } : {}),
      hosts: [...hosts.values()].sort((a, b) => a.preference - b.preference).map((h) => ({
        host: h.host,
        preference: h.preference,
        addresses: h.addresses.map((address) => {
          const mark = ctx.health.marksOf(address, bindingNames, now).sort((a, b) => b.at - a.at)[0];
          return mark ? {
            address,
            failed: { at: iso(mark.at), since_s: Math.round((now - mark.at) / 1000), until: iso(mark.until), flags: flagNames(mark.flags) },
          } : { address };
        }),
        siblings: siblingsOf(h.host, h.addresses, domain, all),
      })),
    },
    ...(view?.mta_sts ? { mta_sts: view.mta_sts } : {}),
    ...(view?.dane ? { dane: view.dane } : {}),
    shaping: covering.map((a) => shapingView(a, now)),
    consecutive_failures: view?.consecutive_failures ?? 0,
    ...(view?.last_error ? { last_error: view.last_error } : {}),
    active: (view?.active ?? 0) + queued.reduce((n, t) => n + t.waiting, 0) + others.reduce((n, o) => n + o.ready + o.in_flight, 0),
    delayed: queued.reduce((n, t) => n + t.delayed, 0),
    other_nodes: others.map(({ domain: _domain, ...o }) => o),
    bindings: [...bindings.values()].map(({ oldest: _oldest, ...b }) => {
      const limits: Record<string, { value: string | number | null; scope: string }> = Object.fromEntries(Object.entries(explainOptions(document, b.binding, domain))
        .filter(([k]) => k !== 'adaptive')
        .map(([k, r]) => [k, { value: (r.value ?? null) as string | number | null, scope: r.value === undefined ? 'unset' : r.scope }]));
      const adaptive = ctx.adaptive.view(b.binding, domain);
      for (const k of ['max_outbound_connections', 'max_deliveries_per_connection', 'outbound_throttle_messages'] as const) {
        if (adaptive?.[k] !== undefined) limits[k] = { value: adaptive[k], scope: 'adaptive' };
      }
      // A set action's options are in force over the configured ones, the latest started last.
      for (const a of covering.filter((x) => x.action === 'set' && targetCovers(x.target, { binding: b.binding, domain, mxHosts })).sort((x, y) => x.since - y.since)) {
        for (const [k, v] of Object.entries(shapingView(a, now).options ?? {})) limits[k] = { value: typeof v === 'boolean' ? String(v) : v, scope: `shaping ${a.id}` };
      }
      return { ...b, limits, ...(adaptive ? { adaptive } : {}) };
    }),
  };
}

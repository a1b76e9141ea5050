// Shaping rules as the daemon runs them: compiled once per (re)load, and the pure questions asked
// of each remote reply: does a rule watch it, and which scope would its action hold.
import type { Config } from '../config/schema.js';
import type { ScopedValues } from '../config/scopes.js';
import { regexKey } from '../config/regex-keys.js';
import { type Trigger, parseTrigger } from '../config/units.js';
import { type Reply, formatReply } from '../core/reply.js';

export type ShapingPhase = 'connect' | 'ehlo' | 'mail' | 'rcpt' | 'data';
export type ShapingActionKind = 'suspend' | 'set' | 'bounce';

/** A reply a receiver gave, where it was given. */
export interface ObservedReply {
  binding: string;
  domain: string;
  /** The MX host that answered; undefined when none was reached. */
  mxHost: string | undefined;
  phase: ShapingPhase;
  reply: Reply;
  /** A connection that failed without a reply (refused, timed out): its reply is Impulse's own words, and rules may watch it. */
  connectionFailure?: boolean;
}

/** What an action holds, named as operators see it. */
export type ShapingTarget =
  | { scope: 'binding_domain'; binding: string; domain: string }
  | { scope: 'domain'; domain: string }
  | { scope: 'binding'; binding: string }
  | { scope: 'site'; binding: string; mxHost: string };

export interface CompiledRule {
  name: string;
  match: RegExp;
  trigger: Trigger;
  action: ShapingActionKind;
  /** Milliseconds; 0 for a bounce that fails only what is queued. */
  duration: number;
  options: Partial<ScopedValues> | undefined;
  domains: Array<string | RegExp> | undefined;
  mxHosts: Array<string | RegExp> | undefined;
  phases: ReadonlySet<ShapingPhase> | undefined;
  scope: ShapingTarget['scope'];
}

const compileList = (list: readonly string[] | undefined) => list?.map((v) => regexKey(v) ?? v.toLowerCase());

export function compileRules(rules: Config['shaping_rules']): CompiledRule[] {
  return rules.map((r) => ({
    name: r.name ?? '',
    // Providers vary the case of the same text between their MXs.
    match: new RegExp(r.match, 'i'),
    trigger: parseTrigger(r.trigger)!,
    action: r.action,
    duration: (r.duration as number | undefined) ?? 0,
    options: r.options as Partial<ScopedValues> | undefined,
    domains: compileList(r.domains),
    mxHosts: compileList(r.mx_hosts),
    phases: r.phase === undefined ? undefined : new Set(typeof r.phase === 'string' ? [r.phase] : r.phase),
    scope: r.scope,
  }));
}

/**
 * Impulse's own replies start so: a rule never acts on them (but for a connection that failed
 * without a reply, which has no other words), so an action cannot feed itself.
 */
const isSynthetic = (r: Reply) => r.text.startsWith('[internal]');

const domainMatches = (patterns: Array<string | RegExp>, domain: string) =>
  patterns.some((p) => (typeof p === 'string' ? p === domain : p.test(domain)));
/** A literal MX pattern is a suffix on a label boundary: google.com serves aspmx.l.google.com. */
const hostMatches = (patterns: Array<string | RegExp>, host: string) =>
  patterns.some((p) => (typeof p === 'string' ? host === p || host.endsWith(`.${p}`) : p.test(host)));

export function ruleWatches(rule: CompiledRule, o: ObservedReply): boolean {
  if (isSynthetic(o.reply) && !o.connectionFailure) return false;
  if (rule.phases && !rule.phases.has(o.phase)) return false;
  if (rule.domains && !domainMatches(rule.domains, o.domain)) return false;
  if (rule.mxHosts && (o.mxHost === undefined || !hostMatches(rule.mxHosts, o.mxHost.toLowerCase()))) return false;
  return rule.match.test(formatReply(o.reply));
}

/** The scope the rule's action holds for this reply; a site needs the MX host that answered. */
export function targetOf(rule: CompiledRule, o: ObservedReply): ShapingTarget | undefined {
  switch (rule.scope) {
    case 'binding_domain': return { scope: 'binding_domain', binding: o.binding, domain: o.domain };
    case 'domain': return { scope: 'domain', domain: o.domain };
    case 'binding': return { scope: 'binding', binding: o.binding };
    case 'site': return o.mxHost === undefined ? undefined : { scope: 'site', binding: o.binding, mxHost: o.mxHost.toLowerCase() };
  }
}

/** One text per target, for keys in Redis and for operators: `site:mta1:aspmx.l.google.com`. */
export function targetKey(t: ShapingTarget): string {
  switch (t.scope) {
    case 'binding_domain': return `binding_domain:${t.binding}:${t.domain}`;
    case 'domain': return `domain:${t.domain}`;
    case 'binding': return `binding:${t.binding}`;
    case 'site': return `site:${t.binding}:${t.mxHost}`;
  }
}

/** A target's names as log records and the admin API carry them. */
export function targetFields(t: ShapingTarget): { scope: ShapingTarget['scope']; binding?: string; domain?: string; mx_host?: string } {
  return {
    scope: t.scope, ...('binding' in t ? { binding: t.binding } : {}), ...('domain' in t ? { domain: t.domain } : {}), ...(t.scope === 'site' ? { mx_host: t.mxHost } : {}),
  };
}

/** A ready queue as an action's scope sees it: its binding, its domain and the domain's MX hosts. */
export interface ShapedQueue {
  binding: string;
  domain: string;
  mxHosts: readonly string[];
}

export function targetCovers(t: ShapingTarget, q: ShapedQueue): boolean {
  switch (t.scope) {
    case 'binding_domain': return t.binding === q.binding && t.domain === q.domain;
    case 'domain': return t.domain === q.domain;
    case 'binding': return t.binding === q.binding;
    case 'site': return t.binding === q.binding && q.mxHosts.includes(t.mxHost);
  }
}

// Adaptive limits in force per binding × domain: rate and reputation deferrals step the
// connection, per-connection and message-rate limits down (at most once per step_down_interval),
// a clean step_up_interval steps them back up, always within the scope's `adaptive` bounds.
import type { Logger } from 'pino';
import type { OptionsLayer } from '../config/delivery-options.js';
import type { ScopedValues } from '../config/scopes.js';
import type { Clock } from '../core/clock.js';
import { type Reply, formatReply } from '../core/reply.js';
import { type AdaptiveBounds, type AdaptiveValues, initialValues, isRateSignal, stepDown, stepUp, throttleOf } from './adaptive-policy.js';
import type { ObservedReply } from './rule.js';

interface AdaptiveDeps {
  /** The bounds configured for the pair; undefined when adaptive limits are off there. */
  bounds(binding: string, domain: string): AdaptiveBounds | undefined;
  bounceClass(r: Reply): number;
  clock: Pick<Clock, 'now'>;
  log: Logger;
}

interface State {
  values: AdaptiveValues;
  lastDown: number;
  lastUp: number;
  lastSignal: number;
  signals: number;
}

/** A pair's adaptive state as operators read it. */
export interface AdaptiveView {
  max_outbound_connections?: number;
  max_deliveries_per_connection?: number;
  outbound_throttle_messages?: string;
  signals: number;
  last_signal?: string;
  last_step_down?: string;
  last_step_up?: string;
}

const key = (binding: string, domain: string) => `${binding}\u0000${domain}`;
const same = (a: AdaptiveValues, b: AdaptiveValues) => a.connections === b.connections && a.deliveries === b.deliveries && a.perSecond === b.perSecond;
const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : undefined);
const rateText = (perSecond: number) => {
  const r = throttleOf(perSecond);
  return `${r.count}/${r.perMs / 1000}`;
};

export class AdaptiveLimits {
  private readonly states = new Map<string, State>();

  constructor(private readonly deps: AdaptiveDeps) {}

  /** A receiver's reply: a rate or reputation deferral steps the pair's limits down, unless they moved down within step_down_interval. */
  observe(o: ObservedReply): void {
    const b = this.deps.bounds(o.binding, o.domain);
    if (!b || !isRateSignal(o.reply, this.deps.bounceClass(o.reply))) return;
    const now = this.deps.clock.now();
    const k = key(o.binding, o.domain);
    let s = this.states.get(k);
    if (!s) this.states.set(k, s = { values: initialValues(b), lastDown: 0, lastUp: 0, lastSignal: 0, signals: 0 });
    s.lastSignal = now;
    s.signals++;
    if (s.lastDown > 0 && now - s.lastDown < b.step_down_interval) return;
    const next = stepDown(s.values, b);
    s.lastDown = now;
    if (same(next, s.values)) return;
    s.values = next;
    this.logStep(o.binding, o.domain, 'down', s, formatReply(o.reply));
  }

  /**
   * The limits in force for the pair, stepping them up first when a clean step_up_interval has
   * passed. `configured` is the pair's `adaptive` option, which the delivery options have at hand.
   */
  overlay(binding: string, domain: string, configured: ScopedValues['adaptive']): OptionsLayer | undefined {
    const b = adaptiveBounds(configured);
    if (!b) return undefined;
    const s = this.states.get(key(binding, domain));
    if (s) this.maybeUp(binding, domain, s, b);
    const v = s?.values ?? initialValues(b);
    const { values, from }: OptionsLayer = { values: {}, from: {} };
    const scope = `adaptive ${binding} :: ${domain}`;
    if (v.connections !== undefined) (values.max_outbound_connections = v.connections, from.max_outbound_connections = scope);
    if (v.deliveries !== undefined) (values.max_deliveries_per_connection = v.deliveries, from.max_deliveries_per_connection = scope);
    if (v.perSecond !== undefined) (values.outbound_throttle_messages = throttleOf(v.perSecond), from.outbound_throttle_messages = scope);
    return { values, from };
  }

  view(binding: string, domain: string): AdaptiveView | undefined {
    const b = this.deps.bounds(binding, domain);
    if (!b) return undefined;
    const s = this.states.get(key(binding, domain));
    const v = s?.values ?? initialValues(b);
    return {
      ...(v.connections !== undefined ? { max_outbound_connections: v.connections } : {}),
      ...(v.deliveries !== undefined ? { max_deliveries_per_connection: v.deliveries } : {}),
      ...(v.perSecond !== undefined ? { outbound_throttle_messages: rateText(v.perSecond) } : {}),
      signals: s?.signals ?? 0,
      ...(s && iso(s.lastSignal) ? { last_signal: iso(s.lastSignal) } : {}),
      ...(s && iso(s.lastDown) ? { last_step_down: iso(s.lastDown) } : {}),
      ...(s && iso(s.lastUp) ? { last_step_up: iso(s.lastUp) } : {}),
    };
  }

  /** Every pair whose limits have moved, with the values in force (the metrics). */
  moved(): Array<{ binding: string; domain: string; values: AdaptiveValues }> {
    return [...this.states].map(([k, s]) => {
      const [binding, domain] = k.split('\u0000') as [string, string];
      return { binding, domain, values: s.values };
    });
  }

  private maybeUp(binding: string, domain: string, s: State, b: AdaptiveBounds): void {
    const now = this.deps.clock.now();
    if (now - Math.max(s.lastSignal, s.lastUp) < b.step_up_interval) return;
    s.lastUp = now;
    const next = stepUp(s.values, b);
    if (same(next, s.values)) {
      // Back at the top of every bound: nothing left to remember.
      if (same(next, initialValues(b))) this.states.delete(key(binding, domain));
      return;
    }
    s.values = next;
    this.logStep(binding, domain, 'up', s);
  }

  private logStep(binding: string, domain: string, direction: 'up' | 'down', s: State, reply?: string): void {
    const v = s.values;
    this.deps.log.info({
      event: 'adaptive_step', binding, domain, direction,
      max_outbound_connections: v.connections, max_deliveries_per_connection: v.deliveries,
      outbound_throttle_messages: v.perSecond === undefined ? undefined : rateText(v.perSecond), ...(reply ? { reply } : {}),
    }, `adaptive limits stepped ${direction}`);
  }
}

/** A scope's `adaptive` option as the policy reads it, the intervals' defaults filled in (Momentum's: down at most once a minute, up once an hour). */
export function adaptiveBounds(configured: ScopedValues['adaptive']): AdaptiveBounds | undefined {
  if (!configured) return undefined;
  return {
    max_outbound_connections: configured.max_outbound_connections,
    max_deliveries_per_connection: configured.max_deliveries_per_connection,
    outbound_throttle_messages: configured.outbound_throttle_messages as AdaptiveBounds['outbound_throttle_messages'],
    step_down_interval: (configured.step_down_interval as number | undefined) ?? 60_000,
    step_up_interval: (configured.step_up_interval as number | undefined) ?? 3_600_000,
  };
}

// Listens to receivers: every remote reply is offered to the shaping rules, a rule whose trigger
// is reached puts its action in force for its scope (kept in Redis, ended by a timer or an
// operator), and the scheduler and the delivery options ask what is in force for a queue.
import type { Logger } from 'pino';
import type { OptionsLayer } from '../config/delivery-options.js';
import type { ScopedOption } from '../config/scopes.js';
import type { Config } from '../config/schema.js';
import type { Clock, Timer } from '../core/clock.js';
import { formatReply } from '../core/reply.js';
import { type ShapingAction, triggered } from './action.js';
import { type CompiledRule, type ObservedReply, type ShapedQueue, type ShapingTarget, compileRules, ruleWatches, targetCovers, targetFields, targetKey, targetOf } from './rule.js';
import type { ShapingStore } from './store.js';
import type { RecordFeed } from '../webhooks/feed.js';
import { TriggerCounts } from './trigger.js';

export type ShapingChange = 'started' | 'ended';
type Listener = (action: ShapingAction, change: ShapingChange) => void;

interface ShaperDeps {
  rules: Config['shaping_rules'];
  store: ShapingStore;
  clock: Clock;
  log: Logger;
  /** Counts actions started, by rule and kind (the metrics). */
  counter: { shapingAction(rule: string, action: string, scope: string): void };
  /** The other nodes of a cluster: told of each action started or extended here, and of each an operator clears here. */
  peers: { shaped(change: ShapingChange, action: ShapingAction): void };
  /** The webhooks' records of actions started here (another node's are its own to report). */
  feed: RecordFeed;
}

/** How an action ended: its time ran out, an operator cleared it, or another node said it ended. */
type EndedBy = 'expiry' | 'operator' | 'cluster';

/** Which actions an operator's clear ends; every given field must match. */
export interface ShapingFilter {
  id?: string | undefined;
  rule?: string | undefined;
  domain?: string | undefined;
  binding?: string | undefined;
  site?: string | undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

function matchesFilter(a: ShapingAction, f: ShapingFilter): boolean {
  const t = a.target;
  return (f.id === undefined || a.id === f.id) && (f.rule === undefined || a.rule === f.rule)
    && (f.domain === undefined || ('domain' in t && t.domain === f.domain))
    && (f.binding === undefined || ('binding' in t && t.binding === f.binding))
    && (f.site === undefined || (t.scope === 'site' && t.mxHost === f.site.toLowerCase()));
}

export class Shaper {
  private rules: CompiledRule[];
  private readonly counts = new TriggerCounts();
  private readonly actions = new Map<string, { action: ShapingAction; timer: Timer }>();
  private readonly listeners: Listener[] = [];
  /** set actions in force: the delivery options' hot path skips the overlay walk while there are none. */
  private overlays = 0;

  constructor(private readonly deps: ShaperDeps) {
    this.rules = compileRules(deps.rules);
  }

  /** The scheduler hears of every action started and ended. */
  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  /** A reload: the next replies meet the new rules; actions in force run to their end. */
  reconfigure(rules: Config['shaping_rules']): void {
    this.rules = compileRules(rules);
    this.counts.clear();
  }

  /** Actions left in Redis by this daemon before a restart, or by another daemon. */
  async restore(): Promise<void> {
    const now = this.deps.clock.now();
    for (const a of await this.deps.store.load(now)) {
      if (this.actions.has(a.id)) continue;
      this.put(a);
      this.deps.log.info({ event: 'shaping_action_restored', ...this.fields(a) }, 'shaping action in force from before the restart');
      this.emit(a, 'started');
    }
  }

  /** An action another node put in force or extended: it holds here alike (trigger counts stay per node). */
  adopt(a: ShapingAction): void {
    const existing = this.actions.get(a.id);
    if (a.until > this.deps.clock.now()) this.put(a);
    if (existing) {
      this.deps.log.info({ event: 'shaping_action_extended', ...this.fields(a), by: 'cluster' }, `shaping rule ${a.rule}: ${a.action} extended by another node`);
      return;
    }
    this.deps.log.warn({ event: 'shaping_action', ...this.fields(a), by: 'cluster' }, `shaping rule ${a.rule}: ${a.action}, from another node`);
    this.emit(a, 'started');
  }

  /** An action another node's operator cleared. */
  drop(id: string): void {
    const entry = this.actions.get(id);
    if (entry) this.end(entry.action, 'cluster');
  }

  /** A reply a receiver gave: each rule watching it counts it, and acts once its trigger is reached. */
  observe(o: ObservedReply): void {
    if (this.rules.length === 0) return;
    const now = this.deps.clock.now();
    for (const rule of this.rules) {
      if (!ruleWatches(rule, o)) continue;
      const target = targetOf(rule, o);
      if (!target || !this.counts.hit(`${rule.name}|${targetKey(target)}`, rule.trigger, now)) continue;
      this.act(rule, target, formatReply(o.reply), now);
    }
  }

  /** Some action is in force: until then the scheduler asks nothing per queue. */
  get inForce(): boolean {
    return this.actions.size > 0;
  }

  /** Every action in force, soonest to end first. */
  active(): ShapingAction[] {
    return [...this.actions.values()].map((e) => e.action).sort((a, b) => a.until - b.until);
  }

  /** Actions in force that cover the queue. */
  covering(q: ShapedQueue): ShapingAction[] {
    if (this.actions.size === 0) return [];
    return this.active().filter((a) => targetCovers(a.target, q));
  }

  /** The suspension or bounce holding the queue, if any. */
  holding(q: ShapedQueue, kind: 'suspend' | 'bounce'): ShapingAction | undefined {
    if (this.actions.size === 0) return undefined;
    for (const { action } of this.actions.values()) if (action.action === kind && targetCovers(action.target, q)) return action;
    return undefined;
  }

  /**
   * Options set actions overlay on a binding × domain's, the latest started last (it wins), with
   * the action each comes from. `mxHostsOf` is asked only while a set action is in force.
   */
  overlay(binding: string, domain: string, mxHostsOf: (domain: string) => readonly string[]): OptionsLayer | undefined {
    if (this.overlays === 0) return undefined;
    const q: ShapedQueue = { binding, domain, mxHosts: mxHostsOf(domain) };
    const sets: ShapingAction[] = [];
    for (const { action } of this.actions.values()) if (action.action === 'set' && targetCovers(action.target, q)) sets.push(action);
    if (sets.length === 0) return undefined;
    sets.sort((a, b) => a.since - b.since);
    const { values, from }: OptionsLayer = { values: {}, from: {} };
    for (const a of sets) {
      Object.assign(values, a.options);
      for (const k of Object.keys(a.options ?? {}) as ScopedOption[]) from[k] = `shaping ${a.id}`;
    }
    return { values, from };
  }

  /** An operator's clear: ends the actions the filter selects and returns them. */
  clear(filter: ShapingFilter): ShapingAction[] {
    const ended = this.active().filter((a) => matchesFilter(a, filter));
    for (const a of ended) this.end(a, 'operator');
    return ended;
  }

  close(): void {
    for (const { timer } of this.actions.values()) timer.cancel();
    this.actions.clear();
  }

  private act(rule: CompiledRule, target: ShapingTarget, reply: string, now: number): void {
    const existing = this.actions.get(`${rule.name}|${targetKey(target)}`)?.action;
    const next = triggered(existing, rule, target, reply, now);
    if (rule.action === 'bounce' && rule.duration === 0) {
      // Fails what is queued now; nothing stays in force.
      this.started(next);
      this.deps.peers.shaped('started', next);
      this.emit(next, 'started');
      return;
    }
    this.put(next);
    this.persist(next);
    this.deps.peers.shaped('started', next);
    if (existing) {
      this.deps.log.info({ event: 'shaping_action_extended', ...this.fields(next) }, `shaping rule ${rule.name}: ${rule.action} extended`);
      return;
    }
    this.started(next);
    this.emit(next, 'started');
  }

  /** An action started here: logged, counted, and a record for the webhooks. */
  private started(a: ShapingAction): void {
    const record = { event: 'shaping_action', ...this.fields(a) };
    this.deps.log.warn(record, `shaping rule ${a.rule}: ${a.action}`);
    this.deps.counter.shapingAction(a.rule, a.action, a.target.scope);
    this.deps.feed.publish(record);
  }

  private put(a: ShapingAction): void {
    const old = this.actions.get(a.id);
    old?.timer.cancel();
    if (!old && a.action === 'set') this.overlays++;
    const timer = this.deps.clock.after(a.until - this.deps.clock.now(), () => this.end(a, 'expiry'));
    this.actions.set(a.id, { action: a, timer });
  }

  private end(a: ShapingAction, by: EndedBy): void {
    const entry = this.actions.get(a.id);
    if (!entry) return;
    entry.timer.cancel();
    this.actions.delete(a.id);
    if (a.action === 'set') this.overlays--;
    // The node that cleared it removed it from Redis; an expiry ends it on every node by its own timer.
    if (by !== 'cluster') this.deps.store.remove(a.id).catch((err: Error) => this.storeFailed(a, err));
    if (by === 'operator') this.deps.peers.shaped('ended', entry.action);
    this.deps.log.info({ event: 'shaping_action_ended', ...this.fields(entry.action), by }, `shaping action of rule ${a.rule} ended`);
    this.emit(entry.action, 'ended');
  }

  private persist(a: ShapingAction): void {
    this.deps.store.save(a).catch((err: Error) => this.storeFailed(a, err));
  }

  private storeFailed(a: ShapingAction, err: Error): void {
    // The action holds in this daemon regardless; only a restart or another daemon would miss it.
    this.deps.log.error({ event: 'shaping_store_failed', id: a.id, err: err.message }, 'shaping action not written to Redis');
  }

  private emit(a: ShapingAction, change: ShapingChange): void {
    for (const l of this.listeners) l(a, change);
  }

  private fields(a: ShapingAction): Record<string, unknown> {
    return {
      id: a.id, rule: a.rule, action: a.action, ...targetFields(a.target), ...(a.options ? { options: a.options } : {}),
      since: iso(a.since), until: iso(a.until), reply: a.reply,
    };
  }
}

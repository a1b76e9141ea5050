// A shaping action in force: what a rule did to a scope, until when, and the reply that made it.
// Re-triggering extends it; the pure functions here say how.
import type { ScopedValues } from '../config/scopes.js';
import { type CompiledRule, type ShapingActionKind, type ShapingTarget, targetKey } from './rule.js';

export interface ShapingAction {
  /** `<rule>|<target key>`: one action per rule and scope. */
  id: string;
  rule: string;
  target: ShapingTarget;
  action: ShapingActionKind;
  options?: Partial<ScopedValues> | undefined;
  since: number;
  until: number;
  /** The reply that triggered it last, as the receiver wrote it. */
  reply: string;
}

const actionId = (rule: string, target: ShapingTarget) => `${rule}|${targetKey(target)}`;

/**
 * The action a trigger puts in force: a new one, or the one in force extended to the later end
 * (never stacked: a second trigger does not add a second duration on top of the first).
 */
export function triggered(existing: ShapingAction | undefined, rule: CompiledRule, target: ShapingTarget, reply: string, now: number): ShapingAction {
  const until = now + rule.duration;
  if (existing && existing.until > now) return { ...existing, until: Math.max(existing.until, until), reply, options: rule.options ?? existing.options };
  return { id: actionId(rule.name, target), rule: rule.name, target, action: rule.action, options: rule.options, since: now, until, reply };
}

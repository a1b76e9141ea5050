// Which MX address the next connection goes to. Preference order is absolute: a less-preferred MX
// is used only while every more-preferred one is failed or at its host limit. Among equal
// preferences the least-loaded host (then address) wins, so connections spread evenly.
import type { Target } from './route.js';

interface ChoiceState {
  isFailed(address: string): boolean;
  hostCount(host: string): number;
  addressCount(address: string): number;
  /** Undefined: no limit for that host. */
  hostLimit(host: string): number | undefined;
}

type Choice =
  | { kind: 'target'; target: Target }
  | { kind: 'all_failed' }
  | { kind: 'all_at_limit'; hosts: Set<string> };

export function chooseTarget(targets: readonly Target[], state: ChoiceState): Choice {
  const preferences = [...new Set(targets.map((t) => t.preference))].sort((a, b) => a - b);
  const atLimit = new Set<string>();
  for (const pref of preferences) {
    const usable = targets.filter((t) => t.preference === pref && !state.isFailed(t.address));
    const open = usable.filter((t) => {
      const limit = state.hostLimit(t.host);
      if (limit !== undefined && state.hostCount(t.host) >= limit) {
        atLimit.add(t.host);
        return false;
      }
      return true;
    });
    if (open.length === 0) continue;
    // Stable order among ties keeps the resolver's shuffle as the tie-breaker.
    const best = open.reduce((a, b) => {
      const byHost = state.hostCount(b.host) - state.hostCount(a.host);
      if (byHost !== 0) return byHost < 0 ? b : a;
      return state.addressCount(b.address) < state.addressCount(a.address) ? b : a;
    });
    return { kind: 'target', target: best };
  }
  return atLimit.size > 0 ? { kind: 'all_at_limit', hosts: atLimit } : { kind: 'all_failed' };
}

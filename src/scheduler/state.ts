// The scheduler's state as plain data (times as ISO strings), for whatever serves it to operators.
import type { Bindings } from '../binding/registry.js';
import { formatReply } from '../core/reply.js';
import { flagNames } from '../delivery/flags.js';
import type { DomainState, Pair } from './domain-state.js';

export interface BindingView {
  binding: string;
  suspended: boolean;
  /** Held in memory, waiting for a connection. */
  ready: number;
  /** On a connection now. */
  in_flight: number;
  connections: number;
  connecting: number;
  idle: number;
  /** Queue id of the message waiting longest for a connection. */
  oldest?: string;
  /** Milliseconds until the message / connection throttle allows the next one; 0 when free or unthrottled. */
  throttled_ms: { messages: number; connections: number };
}

export interface DomainView {
  domain: string;
  phase: 'idle' | 'active' | 'delayed' | 'suspended';
  delayed_until?: string;
  mx: { phase: string; hosts?: Array<{ host: string; address: string; preference: number }>; expires_at?: string };
  active: number;
  /** Jobs this daemon put in the delayed set (retries and parks) that have not come back yet. */
  delayed: number;
  consecutive_failures: number;
  /** Other known domains sharing an MX host or address. */
  siblings: string[];
  last_error?: { reply: string; flags?: string[]; at: string };
  bindings: BindingView[];
}

export interface SchedulerState {
  connections: number;
  connecting: number;
  /** Messages held in active queues or on a connection, all domains. */
  held: number;
  domains: DomainView[];
}

export type ThrottleWait = (pair: Pair, key: 'outbound_throttle_messages' | 'outbound_throttle_connections') => number;

export function domainView(ds: DomainState, all: readonly DomainState[], bindings: Bindings, throttled: ThrottleWait, now: number): DomainView {
  ds.apply({ kind: 'tick', now });
  const mx = ds.record.mx;
  const active = ds.active;
  const view: DomainView = {
    domain: ds.domain,
    phase: ds.suspended ? 'suspended' : ds.phase.phase === 'delayed' ? 'delayed' : active > 0 ? 'active' : 'idle',
    mx: {
      phase: mx.phase,
      ...(mx.phase === 'resolved' ? { hosts: mx.targets.map((t) => ({ host: t.host, address: t.address, preference: t.preference })) } : {}),
      ...('expiresAt' in mx ? { expires_at: new Date(mx.expiresAt).toISOString() } : {}),
    },
    active,
    delayed: ds.delayed,
    consecutive_failures: ds.record.consecutiveFailures,
    siblings: all.filter((o) => ds.isSiblingOf(o)).map((o) => o.domain),
    bindings: [...ds.pairs.values()].map((p) => ({
      binding: p.binding.name,
      suspended: bindings.isSuspended(p.binding.name),
      ready: p.ready.length,
      in_flight: p.inFlight,
      connections: p.connections.size,
      connecting: p.connecting,
      idle: p.idle().length,
      ...(p.ready.length > 0 ? { oldest: p.ready.reduce((min, e) => (e.qid < min ? e.qid : min), p.ready[0]!.qid) } : {}),
      throttled_ms: { messages: throttled(p, 'outbound_throttle_messages'), connections: throttled(p, 'outbound_throttle_connections') },
    })),
  };
  if (ds.phase.phase === 'delayed') view.delayed_until = new Date(ds.phase.until).toISOString();
  if (ds.lastError) {
    view.last_error = {
      reply: formatReply(ds.lastError.reply),
      ...(ds.lastError.flags !== undefined ? { flags: flagNames(ds.lastError.flags) } : {}),
      at: new Date(ds.lastError.at).toISOString(),
    };
  }
  return view;
}

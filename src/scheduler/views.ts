// The scheduler's state as plain data (times as ISO strings), for whatever serves it to operators.
import type { Bindings } from '../binding/registry.js';
import { formatReply } from '../core/reply.js';
import type { DomainRecord } from '../delivery/domain-record.js';
import { flagNames } from '../delivery/flags.js';
import type { DaneState } from '../delivery/tls-requirement.js';
import type { StsState } from '../mta-sts/discovery.js';
import { type QueuePhase, type ReadyQueue, type Throttle } from './ready-queue.js';

export interface ReadyQueueView {
  binding: string;
  suspended: boolean;
  /** What the queue is doing about connections, with `until` or `since` when the phase has one. */
  phase: QueuePhase['phase'];
  phase_detail?: string;
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

/** A domain's MTA-STS policy as last discovered: state none (not published), policy, or unavailable (published, not fetched). */
export interface StsView {
  state: StsState['kind'];
  id?: string;
  mode?: 'enforce' | 'testing' | 'none';
  mx?: string[];
  max_age_s?: number;
  fetched_at?: string;
  expires_at?: string;
  /** Why the last refresh failed while this cached policy was kept. */
  stale?: string;
  /** Why no policy could be had (state unavailable), with its RFC 8460 result type. */
  error?: string;
  result_type?: string;
}

/** What DNSSEC said of a domain at its last lookup: its MX RRset, and per MX host its TLSA records. */
export interface DaneView {
  /** secure: DANE may apply; insecure: it does not; failed: the MX records' status could not be had (mail deferred). */
  mx: DaneState['mx']['kind'];
  mx_reason?: string;
  hosts: Array<{
    host: string;
    /** secure (usable records: TLS must match them), secure-unusable, none, insecure, failed. */
    tlsa: string;
    usable_records?: number;
    address: DaneState['hosts'][string]['address']['kind'];
    reason?: string;
  }>;
}

export interface DomainView {
  domain: string;
  phase: 'idle' | 'active' | 'delayed' | 'suspended';
  delayed_until?: string;
  mx: { phase: string; hosts?: Array<{ host: string; address: string; preference: number }>; expires_at?: string };
  /** The destination's MTA-STS policy, when some scope looks it up and the MX lookup has been made. */
  mta_sts?: StsView;
  /** What DNSSEC says of the destination, when some scope has dane on and the MX lookup has been made. */
  dane?: DaneView;
  active: number;
  /** Jobs this daemon put in the delayed set (retries and parks) that have not come back yet. */
  delayed: number;
  consecutive_failures: number;
  /** Other known domains sharing an MX host or address. */
  siblings: string[];
  last_error?: { reply: string; flags?: string[]; at: string };
  bindings: ReadyQueueView[];
}

export interface SchedulerView {
  connections: number;
  connecting: number;
  /** Messages held in ready queues or on a connection, all domains. */
  held: number;
  domains: DomainView[];
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The phase's own data in a few words, e.g. "until 2026-12-02T10:00:00.000Z" or "on host_limit". */
function phaseDetail(p: QueuePhase): string | undefined {
  switch (p.phase) {
    case 'paced':
      return `until ${iso(p.until)} after ${formatReply(p.reason)}`;
    case 'throttled':
      return `${p.throttle} until ${iso(p.until)}`;
    case 'waiting':
      return `on ${p.on}`;
    case 'awaiting_sibling':
      return `since ${iso(p.since)}`;
    case 'held':
      return `by ${p.by}`;
    default:
      return undefined;
  }
}

export function queueView(q: ReadyQueue, bindings: Bindings, throttled: (key: Throttle) => number): ReadyQueueView {
  const detail = phaseDetail(q.phase);
  let idle = 0;
  for (const c of q.connections) if (c.isIdle) idle++;
  return {
    binding: q.binding.name,
    suspended: bindings.isSuspended(q.binding.name),
    phase: q.phase.phase,
    ...(detail ? { phase_detail: detail } : {}),
    ready: q.entries.length,
    in_flight: q.inFlight,
    connections: q.connections.size,
    connecting: q.connecting,
    idle,
    ...(q.entries.length > 0 ? { oldest: q.entries.reduce((min, e) => (e.qid < min ? e.qid : min), q.entries[0]!.qid) } : {}),
    throttled_ms: { messages: throttled('outbound_throttle_messages'), connections: throttled('outbound_throttle_connections') },
  };
}

function stsView(s: StsState): StsView {
  switch (s.kind) {
    case 'none':
      return { state: 'none' };
    case 'unavailable':
      return { state: 'unavailable', ...(s.id ? { id: s.id } : {}), error: s.error.message, result_type: s.error.resultType };
    case 'policy': {
      const p = s.policy;
      return {
        state: 'policy', id: p.id, mode: p.mode, mx: p.mx, max_age_s: p.maxAge, fetched_at: iso(p.fetchedAt), expires_at: iso(p.expiresAt),
        ...(s.stale ? { stale: s.stale } : {}),
      };
    }
  }
}

function daneView(d: DaneState): DaneView {
  return {
    mx: d.mx.kind,
    ...(d.mx.kind === 'failed' ? { mx_reason: d.mx.reason } : {}),
    hosts: Object.entries(d.hosts).map(([host, h]) => ({
      host,
      tlsa: h.tlsa.kind,
      ...(h.tlsa.kind === 'secure' ? { usable_records: h.tlsa.records.length } : {}),
      address: h.address.kind,
      ...(h.tlsa.kind === 'failed' ? { reason: h.tlsa.reason } : h.address.kind === 'failed' ? { reason: h.address.reason } : {}),
    })),
  };
}

export function domainView(record: DomainRecord, queues: ReadyQueueView[], siblings: string[], now: number): DomainView {
  const delayed = record.isDelayed(now);
  const mx = record.mx;
  const active = queues.reduce((n, q) => n + q.ready + q.in_flight, 0);
  const view: DomainView = {
    domain: record.domain,
    phase: record.suspended ? 'suspended' : delayed ? 'delayed' : active > 0 ? 'active' : 'idle',
    mx: {
      phase: mx.phase,
      ...(mx.phase === 'resolved' ? { hosts: mx.targets.map((t) => ({ host: t.host, address: t.address, preference: t.preference })) } : {}),
      ...('expiresAt' in mx ? { expires_at: iso(mx.expiresAt) } : {}),
    },
    active,
    delayed: record.delayedJobs,
    consecutive_failures: record.consecutiveFailures,
    siblings,
    bindings: queues,
  };
  if (mx.phase === 'resolved' && mx.tls.sts) view.mta_sts = stsView(mx.tls.sts);
  if (mx.phase === 'resolved' && mx.tls.dane) view.dane = daneView(mx.tls.dane);
  if (record.delay.phase === 'delayed') view.delayed_until = iso(record.delay.until);
  if (record.lastError) {
    view.last_error = {
      reply: formatReply(record.lastError.reply),
      ...(record.lastError.flags !== undefined ? { flags: flagNames(record.lastError.flags) } : {}),
      at: iso(record.lastError.at),
    };
  }
  return view;
}

// The admin API's wire format: what the daemon serves and the CLI reads. JSON over HTTP, on a
// Unix socket or a loopback port; times are ISO strings, ages and durations plain numbers with
// their unit in the name. Errors are `{ error: { code, message } }` with the HTTP status below.
import type { Counts } from '../observability/metrics.js';
import type { DaneView, ReadyQueueView, StsView } from '../scheduler/views.js';
import type { AdaptiveView } from '../shaping/adaptive.js';

/** Counts are recipients, as Momentum counts: the metrics' own shape, served as it is. */
export type { Counts };
/** A domain's MTA-STS policy and DANE state, and a pair's adaptive limits, served as their owners view them. */
export type { AdaptiveView, DaneView, StsView };

export const API = {
  summary: 'GET /v1/summary',
  mailq: 'GET /v1/mailq',
  domain: 'GET /v1/domains/:domain',
  flush: 'POST /v1/flush',
  fail: 'POST /v1/fail',
  suspend: 'POST /v1/suspend',
  resume: 'POST /v1/resume',
  message: 'GET /v1/messages/:id',
  messageRetry: 'POST /v1/messages/:id/retry',
  messageFail: 'POST /v1/messages/:id/fail',
  reload: 'POST /v1/reload',
  shaping: 'GET /v1/shaping',
  shapingClear: 'POST /v1/shaping/clear',
  top: 'GET /v1/top',
} as const;

/** 400 bad_request, 401 unauthorized, 404 not_found, 422 invalid_config, 500 internal. */
export type ErrorCode = 'bad_request' | 'unauthorized' | 'not_found' | 'invalid_config' | 'internal';

export interface ApiError {
  error: { code: ErrorCode; message: string; details?: string[] };
}


/** A daemon sharing this one's Redis, as its last heartbeat told; this daemon is among them. */
export interface NodeSummary {
  name: string;
  host: string;
  pid: number;
  version: string;
  started_at: string;
  /** Its last heartbeat is younger than three of its heartbeat intervals; a silent node's figures are its last. */
  alive: boolean;
  /** At Redis's clock, the one every node is judged by. */
  last_heartbeat: string;
  age_s: number;
  connections: { outbound: number; connecting: number; inbound: number };
  /** Messages held in memory. */
  held: number;
  /** Per second over the node's last 60 seconds. */
  rates: Counts;
}

export interface Summary {
  version: string;
  hostname: string;
  /** This daemon's node_name; every other field but `nodes` is this daemon's alone. */
  node: string;
  started_at: string;
  uptime_s: number;
  connections: { inbound: number; outbound: number; connecting: number };
  /** active: held in memory by the scheduler; delayed: in Redis waiting for a time; waiting: in Redis due now. */
  queue: { active: number; delayed: number; waiting: number };
  /** Domains with mail held in memory now. */
  active_domains: number;
  /** Since the daemon started. */
  counts: Counts;
  /** Per second over the last 60 seconds. */
  rates: Counts;
  suspended: { domains: string[]; bindings: string[] };
  /** Every node with a heartbeat in Redis, silent ones for a day, by name. */
  nodes: NodeSummary[];
  /** Each webhook: its stream in Redis (shared by the nodes) and what this node's poster is doing. */
  webhooks: WebhookSummary[];
}

export interface WebhookSummary {
  name: string;
  url: string;
  /** Records waiting in Redis, and the age of the oldest. */
  queued: number;
  oldest_age_s: number | null;
  /** posting: this node holds the webhook's lease; standby: another node does; failing: the endpoint does not take the batch in hand. */
  state: 'posting' | 'standby' | 'failing';
  failing_since?: string;
  failures?: number;
  last_reply?: string;
}

interface LastError {
  reply: string;
  flags?: string[];
  at: string;
}

/** GET /v1/mailq?domain=D&binding=B&limit=N: the whole cluster, other live nodes' memory as their last heartbeat told. */
export interface MailqRow {
  domain: string;
  binding: string;
  /** Held in memory by any live node, or in Redis due now. */
  active: number;
  delayed: number;
  /** Open on any live node. */
  connections: number;
  /** Age of the oldest message of the row, active or delayed. */
  oldest_age_s?: number;
  last_error?: LastError;
}

/** A binding × domain as `impulse top` shows it. */
export interface TopRow {
  domain: string;
  binding: string;
  /** Recipients per second over the last minute, on this node. */
  delivered_per_s: number;
  deferred_per_s: number;
  failed_per_s: number;
  /** As mailq counts them: held or due now, delayed, open connections (every live node). */
  active: number;
  delayed: number;
  connections: number;
  oldest_age_s?: number;
  /** Shaping actions in force over the pair, `<rule>:<action>`. */
  shaping: string[];
}

export interface Top {
  /** The node whose rates these are. */
  node: string;
  rows: TopRow[];
  total_rows: number;
}

export interface Mailq {
  rows: MailqRow[];
  /** Rows before --limit cut them, largest queues first. */
  total_rows: number;
}

export interface AddressMark {
  address: string;
  /** Present while the address is marked failed (skipped until `until`). */
  failed?: { at: string; since_s: number; until: string; flags?: string[] };
}

export interface DomainDetail {
  domain: string;
  phase: 'idle' | 'active' | 'delayed' | 'suspended';
  delayed_until?: string;
  mx: {
    phase: string;
    expires_at?: string;
    hosts: Array<{ host: string; preference: number; addresses: AddressMark[]; siblings: string[] }>;
  };
  /** The destination's MTA-STS policy as last discovered; absent before a lookup, or when no scope has mta_sts on. */
  mta_sts?: StsView;
  /** What DNSSEC said of the destination at its last lookup; absent before one, or when no scope has dane on. */
  dane?: DaneView;
  /** Shaping actions in force over any of the domain's queues. */
  shaping: ShapingView[];
  consecutive_failures: number;
  last_error?: LastError;
  /** Held in memory by any live node, or in Redis due now. */
  active: number;
  delayed: number;
  /** What other live nodes hold for the domain and connections they have open, per binding, as their last heartbeat told. */
  other_nodes: Array<{ node: string; binding: string; ready: number; in_flight: number; connections: number; connecting: number }>;
  /**
   * The scheduler's view of each binding with mail for the domain, plus the limits in force;
   * ready, in_flight, connections and connecting add the other live nodes' figures to this daemon's.
   */
  bindings: Array<Omit<ReadyQueueView, 'oldest'> & {
    /** Connection and throttle options in force for this pair, with the scope each comes from. */
    limits: Record<string, { value: string | number | null; scope: string }>;
    /** Present where the pair has adaptive bounds: the limits in force and the signals seen. */
    adaptive?: AdaptiveView;
  }>;
}

/** POST /v1/flush { domain?: string } (absent: all domains). */
export interface FlushResult {
  flushed: number;
}

/** POST /v1/fail { domain, quiet?, note? } and POST /v1/messages/:id/fail { quiet?, note? }. */
export interface FailResult {
  /** Messages (jobs) that were failed or are being failed as they come off the queue. */
  failed: number;
}

/** POST /v1/suspend and /v1/resume: { domain } or { binding }. */
export interface SuspendResult {
  domain?: string;
  binding?: string;
  suspended: boolean;
}

export interface Attempt {
  at: string;
  attempt: number;
  outcome: 'delivered' | 'deferred' | 'failed';
  reply: string;
  /** Momentum's bounce class of a deferral's or failure's reply; absent for deliveries and attempts recorded before classes were. */
  bounce_class?: number;
  /** Only when an attempt's recipients had different outcomes; at most 10 listed. */
  recipients?: string[];
  action?: string;
  flags?: string[];
  mx_host?: string;
  mx_ip?: string;
  binding?: string;
}

export interface MessageJob {
  job_id: string;
  domain: string;
  recipients: string[];
  binding?: string;
  state: 'active' | 'waiting' | 'delayed' | 'delivered' | 'failed' | 'partly_failed';
  /** Why a delayed job waits: its retry time, or parked because its queue had no room. */
  waiting?: 'retry' | 'parked';
  next_attempt?: string;
  attempts: Attempt[];
  finished_at?: string;
}

export interface MessageDetail {
  qid: string;
  message_id?: string;
  sender: string;
  received_at: string;
  size_bytes?: number;
  jobs: MessageJob[];
}

/** POST /v1/messages/:id/retry */
export interface RetryResult {
  retried: number;
}

/** A shaping action in force: what a rule did to which scope, until when, and the reply that made it. */
export interface ShapingView {
  id: string;
  rule: string;
  action: 'suspend' | 'set' | 'bounce';
  scope: 'binding_domain' | 'domain' | 'binding' | 'site';
  binding?: string;
  domain?: string;
  mx_host?: string;
  /** For set: the options it overlays, as the daemon holds them (durations in ms, throttles as count/seconds). */
  options?: Record<string, string | number | boolean>;
  since: string;
  until: string;
  remaining_s: number;
  reply: string;
}

/** GET /v1/shaping */
export interface ShapingList {
  actions: ShapingView[];
}

/** POST /v1/shaping/clear { id?, rule?, domain?, binding?, site? }: at least one; every given one must match. */
export interface ShapingCleared {
  cleared: ShapingView[];
}

/** POST /v1/reload: 200 with what changed, or 422 invalid_config with `details` listing the errors. */
export interface ReloadResult {
  reloaded: true;
  /** Top-level keys whose change needs a restart; their old values stay in force. */
  restart_required: string[];
}

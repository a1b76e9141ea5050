// Prometheus metrics and the admin API's counts and rates, from one set of calls. Every count is
// recipients, as Momentum counts. Each instance owns its registry, so tests and a restarted daemon
// never see another instance's numbers.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BounceClass } from '../bounce/classes.js';
import { withTimeout } from '../core/timeout.js';
import type { PolicyCheck } from '../delivery/tls-requirement.js';
import type { HookDkimKey } from '../hooks/signatures.js';

/** Counts are recipients: a message to three recipients counts three, as Momentum counts. */
export interface Counts {
  received: number;
  delivered: number;
  transient: number;
  failed: number;
}

/** What the scrape-time gauges read; each call may fail without failing the scrape. */
export interface MetricsSources {
  /** Jobs in Redis: due now (BullMQ wait list) and waiting for a time (delayed set). */
  queueCounts(): Promise<{ waiting: number; delayed: number }>;
  /** Messages held in memory by the scheduler (the active queue). */
  held(): number;
  /** Jobs taken from Redis and not yet held by the scheduler nor handed back to BullMQ (the fetch bound counts these). */
  inTransit(): number;
  /** Open SMTP intake sessions. */
  inbound(): number;
  /** Open outbound connections per binding name. */
  outboundByBinding(): ReadonlyMap<string, number>;
  /** One Redis PING; resolves with the round trip in milliseconds, rejects when Redis is unreachable. */
  redisPing(): Promise<number>;
  /** Adaptive limits that have moved from the top of their bounds, per binding × domain (the throttle in messages per second). */
  adaptive?(): Array<{ binding: string; domain: string; values: { connections?: number | undefined; deliveries?: number | undefined; perSecond?: number | undefined } }>;
  /** Cluster leases this node holds, per lease key (`pair:<binding>:<domain>`, `host:<mx host>`). */
  leases?(): ReadonlyMap<string, number>;
}

const WINDOW_S = 60;
// Under Prometheus' default 10 s scrape timeout, so a hung Redis yields redis_up 0 instead of no scrape.
const SOURCE_TIMEOUT_MS = 2000;
// Injection to delivery: sub-second on a good day, up to a day of retries on a bad one.
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];
// Remote servers choose the status text; anything else would become an unbounded label.
const ENHANCED_STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;

interface Bucket extends Counts {
  second: number;
}

const zero = (): Counts => ({ received: 0, delivered: 0, transient: 0, failed: 0 });

/** The daemon's metrics: call the event methods as mail moves; scrape `registry`. */
export class Metrics {
  /** This instance's prom-client registry, with the process's default metrics. */
  readonly registry = new Registry();
  private readonly totals = zero();
  private readonly ring: Bucket[] = Array.from({ length: WINDOW_S }, () => ({ second: -1, ...zero() }));
  private ping: Promise<number | undefined> | undefined;
  private readonly receivedTotal: Counter<'binding'>;
  private readonly deliveredTotal: Counter<'binding'>;
  private readonly deferredTotal: Counter<'binding' | 'status' | 'bounce_class'>;
  private readonly failedTotal: Counter<'binding' | 'status' | 'bounce_class'>;
  private readonly connectionFailures: Counter<'flag'>;
  private readonly migrations: Counter;
  private readonly tlsPolicySessions: Counter<'policy_type' | 'policy_domain' | 'mode' | 'result'>;
  private readonly dkimSignatures: Counter<'signing_domain' | 'selector' | 'algorithm' | 'result'>;
  private readonly shapingActions: Counter<'rule' | 'action' | 'scope'>;
  private readonly latency: Histogram;

  constructor(private readonly sources: MetricsSources, private readonly now: () => number = Date.now) {
    const registers = [this.registry];
    this.receivedTotal = new Counter({
      name: 'impulse_messages_received_total', help: 'Recipients accepted at intake.', labelNames: ['binding'], registers,
    });
    this.deliveredTotal = new Counter({
      name: 'impulse_messages_delivered_total', help: 'Recipients accepted by the remote server.', labelNames: ['binding'], registers,
    });
    this.deferredTotal = new Counter({
      name: 'impulse_messages_deferred_total', help: 'Recipients deferred for a retry, by RFC 3463 enhanced status and Momentum bounce class.',
      labelNames: ['binding', 'status', 'bounce_class'], registers,
    });
    this.failedTotal = new Counter({
      name: 'impulse_messages_failed_total', help: 'Recipients failed permanently, by RFC 3463 enhanced status and Momentum bounce class.',
      labelNames: ['binding', 'status', 'bounce_class'], registers,
    });
    this.connectionFailures = new Counter({
      name: 'impulse_connection_failures_total', help: 'Outbound connection attempts that failed, by CONN_ERROR_* flag.',
      labelNames: ['flag'], registers,
    });
    this.migrations = new Counter({
      name: 'impulse_connection_migrations_total', help: 'Idle outbound connections moved to a sibling domain.', registers,
    });
    this.tlsPolicySessions = new Counter({
      name: 'impulse_tls_policy_sessions_total',
      help: 'Outbound sessions under a published TLS policy (sts: MTA-STS, tlsa: DANE), by policy domain, mode and RFC 8460 result type (success, or why it failed or would have failed): the counts of a TLS-RPT report.',
      labelNames: ['policy_type', 'policy_domain', 'mode', 'result'], registers,
    });
    this.dkimSignatures = new Counter({
      name: 'impulse_dkim_signatures_total',
      help: 'DKIM signatures made at intake (result signed), or that a key failed to make, the message then refused (result failed).',
      labelNames: ['signing_domain', 'selector', 'algorithm', 'result'], registers,
    });
    this.shapingActions = new Counter({
      name: 'impulse_shaping_actions_total',
      help: 'Shaping actions started (not counting extensions), by rule, action (suspend, set, bounce) and scope.',
      labelNames: ['rule', 'action', 'scope'], registers,
    });
    this.latency = new Histogram({
      name: 'impulse_delivery_latency_seconds', help: 'Injection to delivery, one observation per delivered recipient.',
      buckets: LATENCY_BUCKETS, registers,
    });
    this.scrapeGauges(registers);
    collectDefaultMetrics({ register: this.registry });
  }

  /** `recipients` accepted at intake for `binding`. */
  received(binding: string, recipients: number): void {
    this.receivedTotal.inc({ binding }, recipients);
    this.add('received', recipients);
  }

  /** `recipients` delivered `latencyMs` after injection. */
  delivered(binding: string, recipients: number, latencyMs: number): void {
    this.deliveredTotal.inc({ binding }, recipients);
    // Per recipient, so the histogram's _count matches impulse_messages_delivered_total.
    for (let i = 0; i < recipients; i++) this.latency.observe(latencyMs / 1000);
    this.add('delivered', recipients);
  }

  /** `recipients` deferred with enhanced status `status` such as '4.4.1', of bounce class `bounceClass` such as 24. */
  deferred(binding: string, status: string, bounceClass: BounceClass, recipients: number): void {
    this.deferredTotal.inc({ binding, status: statusLabel(status), bounce_class: String(bounceClass) }, recipients);
    this.add('transient', recipients);
  }

  /** `recipients` failed with enhanced status `status` such as '5.1.1', of bounce class `bounceClass` such as 10. */
  failed(binding: string, status: string, bounceClass: BounceClass, recipients: number): void {
    this.failedTotal.inc({ binding, status: statusLabel(status), bounce_class: String(bounceClass) }, recipients);
    this.add('failed', recipients);
  }

  /** A failed connection attempt; only its CONN_ERROR_* flags are counted, CONN_ACTION_* are what was done about it. */
  connectionFailed(_binding: string, flags: readonly string[]): void {
    for (const flag of flags) if (flag.startsWith('CONN_ERROR_')) this.connectionFailures.inc({ flag });
  }

  /** A session (or a refusal to open one) judged under a destination's published TLS policy. */
  tlsPolicy(check: PolicyCheck): void {
    this.tlsPolicySessions.inc({ policy_type: check.policy.type, policy_domain: check.policy.domain, mode: check.mode, result: check.result });
  }

  /** A DKIM signature made, or a key's failure to make one. */
  dkimSigned(key: HookDkimKey, result: 'signed' | 'failed'): void {
    this.dkimSignatures.inc({ signing_domain: key.domain, selector: key.selector, algorithm: key.algorithm, result });
  }

  /** A shaping rule acted. */
  shapingAction(rule: string, action: string, scope: string): void {
    this.shapingActions.inc({ rule, action, scope });
  }

  /** A connection moved to a sibling domain. */
  migrated(): void {
    this.migrations.inc();
  }

  /** Recipients since construction. */
  counts(): Counts {
    return { ...this.totals };
  }

  /** Recipients per second over the last 60 whole seconds, the current one included. */
  rates(): Counts {
    const sum = zero();
    const current = Math.floor(this.now() / 1000);
    for (const b of this.ring) {
      if (b.second <= current - WINDOW_S || b.second > current) continue;
      for (const k of KEYS) sum[k] += b[k];
    }
    for (const k of KEYS) sum[k] /= WINDOW_S;
    return sum;
  }

  /**
   * Drops every metric, so a scrape racing shutdown no longer calls the sources. prom-client 15
   * runs no timers for default metrics; its event-loop-delay monitor and GC observer cannot be
   * stopped from outside and do not keep the process alive.
   */
  close(): void {
    this.registry.clear();
  }

  private add(key: keyof Counts, n: number): void {
    this.totals[key] += n;
    const second = Math.floor(this.now() / 1000);
    const b = this.ring[second % WINDOW_S]!;
    if (b.second !== second) Object.assign(b, zero(), { second });
    b[key] += n;
  }

  // Each gauge resets before it reads, so a source that fails is never shown with a stale value: a
  // labelled series disappears, an unlabelled one (which prom-client cannot leave empty) reads NaN.
  private scrapeGauges(registers: Registry[]): void {
    const { sources } = this;
    new Gauge({
      name: 'impulse_adaptive_limit', registers, labelNames: ['binding', 'domain', 'option'],
      help: 'Adaptive limits in force where they have moved from the top of their bounds: max_outbound_connections, max_deliveries_per_connection, and outbound_throttle_messages in messages per second.',
      collect() {
        this.reset();
        for (const { binding, domain, values: v } of attempt(() => sources.adaptive?.() ?? []) ?? []) {
          if (v.connections !== undefined) this.set({ binding, domain, option: 'max_outbound_connections' }, v.connections);
          if (v.deliveries !== undefined) this.set({ binding, domain, option: 'max_deliveries_per_connection' }, v.deliveries);
          if (v.perSecond !== undefined) this.set({ binding, domain, option: 'outbound_throttle_messages' }, v.perSecond);
        }
      },
    });
    new Gauge({
      name: 'impulse_cluster_leases', registers, labelNames: ['lease'],
      help: 'Connections this node holds cluster leases for (cluster_max_outbound_connections), per lease key: pair:<binding>:<domain> or host:<mx host>.',
      collect() {
        this.reset();
        for (const [lease, n] of attempt(() => sources.leases?.()) ?? []) this.set({ lease }, n);
      },
    });
    new Gauge({
      name: 'impulse_queue_messages', registers, labelNames: ['state'],
      help: 'Jobs (one per message and destination domain, not recipients) by state: active (held in memory by the scheduler), waiting (in Redis, due now), delayed (in Redis, due later).',
      async collect() {
        this.reset();
        const held = attempt(() => sources.held());
        if (held !== undefined) this.set({ state: 'active' }, held);
        const q = await sourceValue(Promise.resolve().then(() => sources.queueCounts()));
        if (q === undefined) return;
        this.set({ state: 'waiting' }, q.waiting);
        this.set({ state: 'delayed' }, q.delayed);
      },
    });
    new Gauge({
      name: 'impulse_jobs_in_transit', registers,
      help: 'Jobs taken from Redis and neither held by the scheduler nor handed back to Redis yet; fetches wait at a bound per shard.',
      collect() {
        this.set(attempt(() => sources.inTransit()) ?? NaN);
      },
    });
    new Gauge({
      name: 'impulse_connections_inbound', help: 'Open SMTP intake sessions.', registers,
      collect() {
        this.set(attempt(() => sources.inbound()) ?? NaN);
      },
    });
    new Gauge({
      name: 'impulse_connections_outbound', registers, labelNames: ['binding'],
      help: 'Open outbound connections by binding; a binding the scheduler no longer reports disappears.',
      collect() {
        this.reset();
        const byBinding = attempt(() => sources.outboundByBinding());
        for (const [binding, n] of byBinding ?? []) this.set({ binding }, n);
      },
    });
    // Both gauges come from one PING per scrape: the registry collects them concurrently.
    const pingOnce = () => {
      this.ping ??= sourceValue(Promise.resolve().then(() => sources.redisPing())).finally(() => { this.ping = undefined; });
      return this.ping;
    };
    new Gauge({
      name: 'impulse_redis_up', help: '1 when a Redis PING at scrape time succeeded, else 0.', registers,
      async collect() {
        this.set((await pingOnce()) === undefined ? 0 : 1);
      },
    });
    new Gauge({
      name: 'impulse_redis_rtt_seconds', help: 'Round trip of a Redis PING at scrape time; NaN when it failed.', registers,
      async collect() {
        const ms = await pingOnce();
        this.set(ms === undefined ? NaN : ms / 1000);
      },
    });
  }
}

const KEYS = Object.keys(zero()) as Array<keyof Counts>;

function statusLabel(status: string): string {
  return ENHANCED_STATUS.test(status) ? status : 'unknown';
}

function attempt<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** The value, or undefined when the source rejects or takes longer than SOURCE_TIMEOUT_MS. */
export function sourceValue<T>(p: Promise<T>): Promise<T | undefined> {
  return withTimeout(p.catch(() => undefined), SOURCE_TIMEOUT_MS, () => undefined);
}

// The whole scheduler in one process on a fake clock: the real initiator over an in-memory
// resolver and a scripted connector whose sessions answer after fake delays, an in-memory
// stand-in for BullMQ's delayed set and the parked index, and a record of every outcome.
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Bindings } from '../../src/binding/registry.js';
import { Lazy } from '../../src/core/lazy.js';
import { AddressHealth } from '../../src/delivery/address-health.js';
import type { ConnectSpec, Connector, SmtpClient } from '../../src/delivery/connector.js';
import { HostConnections } from '../../src/delivery/host-connections.js';
import { Initiator } from '../../src/delivery/initiator.js';
import { judgeSession } from '../../src/delivery/tls-judge.js';
import type { PolicyCheck, TlsRequirement } from '../../src/delivery/tls-requirement.js';
import type { DnsResolver } from '../../src/dns/resolver.js';
import { NO_FEED } from '../../src/webhooks/feed.js';
import { HookRegistry } from '../../src/hooks/registry.js';
import type { Attempt } from '../../src/outcome/attempt.js';
import type { ParkedIndex } from '../../src/scheduler/backlog.js';
import type { Entry, Outcome, Returning } from '../../src/scheduler/entry.js';
import type { ReadyQueueId } from '../../src/scheduler/ready-queue.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import type { ShapingAction } from '../../src/shaping/action.js';
import { Shaper } from '../../src/shaping/shaper.js';
import { AdaptiveLimits, adaptiveBounds } from '../../src/shaping/adaptive.js';
import type { ObservedReply } from '../../src/shaping/rule.js';
import { BounceClassifier } from '../../src/bounce/classify.js';
import { FakeClock } from './fake-clock.js';
import { configFrom } from './options.js';
import { DeliveryOptions, layered } from '../../src/config/delivery-options.js';
import { DestinationPolicies } from '../../src/delivery/destination-tls.js';

/** How a scripted MX address behaves. */
export interface ServerScript {
  /** Refuse every connection (ECONNREFUSED). */
  refuse?: boolean;
  /** Fake milliseconds before the session is ready, and per transaction. */
  connectMs?: number;
  sendMs?: number;
  /** The final reply for a transaction; default 250 2.0.0 ok. */
  reply?: (recipients: readonly string[]) => string;
  /** Offers STARTTLS and verifies up to this: what a session to it can carry. */
  tls?: 'no' | 'ca' | 'host';
}

export interface ServerLog {
  /** Sessions opened, with their source address. */
  sessions: Array<{ source: string | undefined; at: number }>;
  transactions: Array<{ source: string | undefined; recipients: string[]; at: number }>;
  open: number;
  peak: number;
  /** Peak open sessions per source address. */
  peakBySource: Map<string | undefined, number>;
}

export interface Resolved {
  qid: string;
  domain: string;
  binding: string;
  outcome: Outcome;
  at: number;
}

export interface HarnessOptions {
  config?: Record<string, unknown>;
  mx: Record<string, Array<{ exchange: string; priority: number }> | string>;
  a: Record<string, string[]>;
  servers?: Record<string, ServerScript>;
  /** Fake milliseconds an MX lookup takes. */
  lookupMs?: number;
}

/** Each domain with one MX host, `mx.<domain>`, at the given address. */
export function ownMx(domains: Record<string, string>): Pick<HarnessOptions, 'mx' | 'a'> {
  return {
    mx: Object.fromEntries(Object.keys(domains).map((d) => [d, [{ exchange: `mx.${d}`, priority: 10 }]])),
    a: Object.fromEntries(Object.entries(domains).map(([d, address]) => [`mx.${d}`, [address]])),
  };
}

class ScriptedClient extends EventEmitter implements SmtpClient {
  closed = false;
  readonly extensions: string[] = [];
  readonly secure: boolean;
  readonly tls: SmtpClient['tls'];
  private pending = new Set<() => void>();

  constructor(private readonly h: Harness, readonly spec: ConnectSpec, private readonly script: ServerScript, private readonly log: ServerLog) {
    super();
    this.secure = (script.tls ?? 'no') !== 'no' && spec.tls !== 'no';
    this.tls = { verified: this.secure ? (script.tls === 'host' ? spec.tlsVerify : script.tls === 'ca' && spec.tlsVerify !== 'host' ? spec.tlsVerify : 'no') : 'no' };
  }

  onClose(listener: () => void): void {
    this.once('end', listener);
  }

  offClose(listener: () => void): void {
    this.off('end', listener);
  }

  /** A scripted session has no TLS socket to judge: it is judged as a plain-text one. */
  judge(requirement: TlsRequirement, host: string): PolicyCheck | undefined {
    return judgeSession(requirement, undefined, host).policy;
  }

  send(envelope: { from: string; to: string[] }) {
    return new Promise<never>((resolve, reject) => {
      const done = () => {
        this.pending.delete(cancel);
        this.log.transactions.push({ source: this.spec.localAddress, recipients: envelope.to, at: this.h.clock.now() });
        resolve({ response: this.script.reply?.(envelope.to) ?? '250 2.0.0 ok' } as never);
      };
      const timer = this.h.clock.after(this.script.sendMs ?? 0, done);
      const cancel = () => {
        timer.cancel();
        reject(Object.assign(new Error('closed'), { code: 'ECONNECTION', command: 'CONN' }));
      };
      this.pending.add(cancel);
    });
  }

  async reset(): Promise<void> {}

  quit(): void {
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.log.open--;
    for (const cancel of [...this.pending]) cancel();
    this.emit('end');
  }
}

export class Harness {
  readonly clock = new FakeClock();
  readonly resolved: Resolved[] = [];
  /** Shaping actions started or cleared here, as the other nodes of a cluster are told. */
  readonly shapingAnnounced: Array<{ change: string; id: string }> = [];
  /** Domains this node delayed, as the other nodes of a cluster are told. */
  readonly delaysAnnounced: Array<{ domain: string; until: number }> = [];
  /** Jobs whose lock another node holds now: their attempt is abandoned before its transaction. */
  readonly locksLost = new Set<string>();
  readonly logs: Array<Record<string, any>> = [];
  readonly hookCalls: Array<{ hook: string; args: unknown[] }> = [];
  readonly servers = new Map<string, ServerLog>();
  readonly scheduler: Scheduler;
  readonly options: DeliveryOptions;
  readonly bindings: Bindings;
  readonly shaper: Shaper;
  readonly adaptive: AdaptiveLimits;
  /** The stand-in for Redis's hash of shaping actions. */
  readonly shapingStored = new Map<string, ShapingAction>();
  /** Jobs in the stand-in for BullMQ's delayed set, by job id. */
  readonly delayed = new Map<string, { until: number; promote(): void }>();
  promotions = 0;
  /** Sessions open over all addresses, and the most at once. */
  open = 0;
  peak = 0;
  private seq = 0;
  private stopped = false;
  private readonly clients = new Set<ScriptedClient>();

  constructor(private readonly o: HarnessOptions) {
    // A short data_timeout: a transaction's deadline is a real timer, which a failed test leaves running.
    const config = configFrom({ remote_smtp_port: 25, prohibited_hosts: [], ehlo_hostname: 'out.test', data_timeout: '1s', ...o.config });
    const log = pino({ level: 'debug' }, new Writable({ write: (chunk, _e, cb) => { this.logs.push(JSON.parse(String(chunk))); cb(); } }));
    const hooks = new HookRegistry({ log });
    for (const hook of ['premigrate_outbound_connection', 'log_client_connection_failure', 'log_client_connection_success'] as const) {
      hooks.registerLast(hook, (_c: unknown, ...args: unknown[]) => { this.hookCalls.push({ hook, args: structuredClone(args.map(plain)) }); }, { plugin: 'harness' });
    }
    hooks.seal();
    const stored = this.shapingStored;
    this.shaper = new Shaper({
      rules: config.shaping_rules, clock: this.clock, log, counter: { shapingAction: () => {} }, feed: NO_FEED,
      peers: { shaped: (change, action) => void this.shapingAnnounced.push({ change, id: action.id }) },
      store: {
        load: async (now) => [...stored.values()].filter((a) => a.until > now),
        save: async (a) => void stored.set(a.id, a),
        remove: async (id) => void stored.delete(id),
      },
    });
    const classes = new BounceClassifier([]);
    this.adaptive = new AdaptiveLimits({
      bounds: (b, d) => adaptiveBounds(this.options.configured(b, d).adaptive), bounceClass: (r) => classes.classify(r), clock: this.clock, log,
    });
    this.options = new DeliveryOptions(config, layered(
      (b, d, configured) => this.adaptive.overlay(b, d, configured.adaptive),
      (b, d) => this.shaper.overlay(b, d, (x) => this.scheduler.mxHostsOf(x)),
    ));
    const replies = { observe: (o: ObservedReply) => { this.shaper.observe(o); this.adaptive.observe(o); } };
    this.bindings = new Bindings(config);
    const initiator = new Initiator({
      resolver: this.resolver(), connector: this.connector(), health: new AddressHealth(), hosts: new HostConnections(), hooks,
      clock: this.clock, log, options: this.options, isLocalAddress: () => true,
      policies: new DestinationPolicies({}), observer: { tlsPolicy: () => {} }, replies,
    });
    this.scheduler = new Scheduler({
      initiator, parked: this.parkedIndex(), options: this.options, bindings: this.bindings, hooks, clock: this.clock, log,
      observer: { connectionFailed: () => {}, migrated: () => {} }, maxHeld: config.max_active_messages, shaping: this.shaper, replies,
      delays: { delayed: (domain, until) => void this.delaysAnnounced.push({ domain, until }) },
    });
  }

  server(address: string): ServerLog {
    let s = this.servers.get(address);
    if (!s) this.servers.set(address, s = { sessions: [], transactions: [], open: 0, peak: 0, peakBySource: new Map() });
    return s;
  }

  /** Admits `n` messages to `domain` (one recipient each unless told), from `binding` (default: the default binding). */
  submit(domain: string, n = 1, opts: { binding?: string; attempts?: number; recipients?: number } = {}): string[] {
    return Array.from({ length: n }, () => {
      const qid = `Q${String(++this.seq).padStart(5, '0')}`;
      const recipients = Array.from({ length: opts.recipients ?? 1 }, (_, i) => `r${this.seq}.${i}@${domain}`);
      this.admit({ qid, jobId: `${qid}-0`, domain, binding: opts.binding ?? 'default', recipients, attempts: opts.attempts ?? 0 });
      return qid;
    });
  }

  /** What became of each message, by queue id: its last outcome. */
  last(qid: string): Resolved | undefined {
    return this.resolved.filter((r) => r.qid === qid).at(-1);
  }

  delivered(domain?: string): Resolved[] {
    return this.resolved.filter((r) => (domain === undefined || r.domain === domain) && r.outcome.kind === 'attempted'
      && r.outcome.attempt.replies.every((x) => x.reply.code < 300));
  }

  attempted(action?: string): Resolved[] {
    return this.resolved.filter((r) => r.outcome.kind === 'attempted' && (action === undefined || r.outcome.attempt.action === action));
  }

  parked(reason?: string): Resolved[] {
    return this.resolved.filter((r) => r.outcome.kind === 'parked' && (reason === undefined || r.outcome.reason === reason));
  }

  events(name: string): Array<Record<string, any>> {
    return this.logs.filter((r) => r.event === name);
  }

  /** Stops the scheduler as a stopping daemon does: its Workers fetch nothing more, so nothing comes back. */
  stop(): void {
    this.stopped = true;
    this.scheduler.close();
  }

  /** Stops the scheduler and closes every session, so no fake timer or promise is left behind. */
  async finish(): Promise<void> {
    this.stop();
    for (const c of this.clients) c.close();
    await this.clock.advance(10_000);
  }

  private admit(job: { qid: string; jobId: string; domain: string; binding: string; recipients: string[]; attempts: number; returning?: Returning }): void {
    const binding = this.bindings.resolve({ binding: job.binding }, job.qid);
    const entry: Entry = {
      ...job, binding, sender: 's@sender.test', params: {},
      body: new Lazy(async () => Buffer.from(`Subject: ${job.qid}\r\n\r\nbody\r\n`)),
      stillHeld: async () => !this.locksLost.has(job.jobId),
      resolve: (outcome) => {
        this.resolved.push({ qid: job.qid, domain: job.domain, binding: binding.name, outcome, at: this.clock.now() });
        if (outcome.kind === 'abandoned') return Promise.resolve(false);
        if (outcome.kind === 'parked') {
          this.delay(job, outcome.until);
          return Promise.resolve(true);
        }
        return Promise.resolve(temporary(outcome.attempt));
      },
    };
    this.scheduler.admit(entry);
  }

  /** The job waits in the delayed set until `until`, or a promotion. */
  private delay(job: Parameters<Harness['admit']>[0], until: number): void {
    const back = (promoted: boolean) => {
      if (this.stopped) return;
      this.delayed.delete(job.jobId);
      this.admit({ ...job, returning: { from: 'park', promoted } });
    };
    const timer = this.clock.after(until - this.clock.now(), () => back(false));
    this.delayed.set(job.jobId, { until, promote: () => { timer.cancel(); this.clock.soon(() => back(true)); } });
  }

  private parkedIndex(): ParkedIndex {
    const filed = new Map<string, string[]>();
    const key = (q: ReadyQueueId) => `${q.binding}/${q.domain}`;
    return {
      file: async (q, jobId) => {
        const ids = filed.get(key(q)) ?? [];
        if (!ids.includes(jobId)) ids.push(jobId);
        filed.set(key(q), ids);
      },
      unfile: async (q, jobId) => {
        filed.set(key(q), (filed.get(key(q)) ?? []).filter((id) => id !== jobId));
      },
      promote: async (q, count) => {
        const ids = filed.get(key(q)) ?? [];
        const popped = ids.splice(0, count);
        let promoted = 0;
        for (const id of popped) {
          const job = this.delayed.get(id);
          if (!job) continue;
          job.promote();
          promoted++;
        }
        this.promotions++;
        return { promoted, remaining: ids.length };
      },
      queues: async () => [...filed].filter(([, ids]) => ids.length > 0).map(([k]) => ({ binding: k.split('/')[0]!, domain: k.split('/')[1]! })),
    };
  }

  private resolver(): DnsResolver {
    const later = <T>(value: () => T): Promise<T> => new Promise((resolve, reject) => this.clock.after(this.o.lookupMs ?? 0, () => {
      try {
        resolve(value());
      } catch (err) {
        reject(err);
      }
    }));
    const fail = (code: string) => Object.assign(new Error(code), { code });
    return {
      resolveMx: (name) => later(() => {
        const v = this.o.mx[name];
        if (v === undefined) throw fail(this.o.a[name] ? 'ENODATA' : 'ENOTFOUND');
        if (typeof v === 'string') throw fail(v);
        return v;
      }),
      resolve4: (name) => later(() => {
        const v = this.o.a[name];
        if (!v) throw fail('ENOTFOUND');
        return v.map((address) => ({ address, ttl: 3600 }));
      }),
      // No domain of these scenarios publishes an MTA-STS policy.
      resolveTxt: (name) => later(() => {
        throw fail(this.o.mx[name] || this.o.a[name] ? 'ENODATA' : 'ENOTFOUND');
      }),
    };
  }

  private connector(): Connector {
    return (spec) => new Promise((resolve, reject) => {
      const script = this.o.servers?.[spec.address] ?? {};
      this.clock.after(script.connectMs ?? 0, () => {
        if (script.refuse) {
          reject(Object.assign(new Error(`connect ECONNREFUSED ${spec.address}:25`), { code: 'ESOCKET', originalCode: 'ECONNREFUSED' }));
          return;
        }
        const log = this.server(spec.address);
        log.sessions.push({ source: spec.localAddress, at: this.clock.now() });
        log.open++;
        log.peak = Math.max(log.peak, log.open);
        this.open++;
        this.peak = Math.max(this.peak, this.open);
        const bySource = this.clientsFrom(spec.address, spec.localAddress) + 1;
        log.peakBySource.set(spec.localAddress, Math.max(log.peakBySource.get(spec.localAddress) ?? 0, bySource));
        const client = new ScriptedClient(this, spec, script, log);
        this.clients.add(client);
        client.onClose(() => {
          this.clients.delete(client);
          this.open--;
        });
        resolve(client);
      });
    });
  }

  private clientsFrom(address: string, source: string | undefined): number {
    let n = 0;
    for (const c of this.clients) if (!c.closed && c.spec.address === address && c.spec.localAddress === source) n++;
    return n;
  }
}

function temporary(a: Attempt): boolean {
  return a.replies.some((r) => r.reply.code >= 400 && r.reply.code < 500);
}

/** Hook arguments as data: a connection handle or a domain record by the fields hooks may read. */
function plain(v: unknown): unknown {
  if (v && typeof v === 'object' && 'domain' in v && 'consecutiveFailures' in v) return { domain: (v as { domain: string }).domain };
  if (v && typeof v === 'object' && 'id' in v && 'remote' in v) {
    const c = v as unknown as { id: string; binding: string; domain: { domain: string } };
    return { id: c.id, binding: c.binding, serving: c.domain.domain };
  }
  return v;
}

export function replyOf(r: Resolved): string {
  if (r.outcome.kind === 'abandoned') return 'abandoned';
  if (r.outcome.kind !== 'attempted') return `parked: ${r.outcome.reason}`;
  const x = r.outcome.attempt.replies[0]!.reply;
  return `${x.code} ${x.enhanced}`;
}

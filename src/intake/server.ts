// SMTP intake on every configured listener. A message is answered 250 only once its body and
// jobs are in Redis; anything that stops that answers 451 4.3.0 and leaves nothing deliverable.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { SMTPServer, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { type BindingChoice, type BindingRule, assignBinding } from '../binding/assign.js';
import type { Bindings } from '../binding/registry.js';
import { batchWrites } from '../core/coalesce.js';
import { headerFields, parseHeaders, removeHeaders } from '../core/headers.js';
import type { Clock } from '../core/clock.js';
import { newQueueId } from '../core/ids.js';
import type { ListenerConfig } from '../config/schema.js';
import { supportsReusePort } from './reuse-port.js';
import type { DkimSigner } from '../dkim/signer.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { HookMessage } from '../hooks/signatures.js';
import type { Enqueuer } from '../queue/enqueue.js';
import { ReplicaShortfall } from '../store/replica-wait.js';
import { type RecordFeed, logEvent } from '../webhooks/feed.js';
import { domainOf, recipientsByDomain } from '../queue/job.js';
import { BareNewlineDetector } from './bare-newline.js';
import { CodedServer } from './coded-server.js';
import { dsnRequests, messageParams, requestsOf } from './envelope-params.js';
import { ListenerPolicy } from './listener-policy.js';
import { receivedHeader } from './received.js';
import { smtpError } from './reply.js';

interface IntakeDeps {
  listeners: ListenerConfig[];
  hostname: string;
  enqueuer: Enqueuer;
  clock: Clock;
  log: Logger;
  /** How long sessions in progress may go on after close() before they are cut. */
  closeTimeout: number;
  bindings: Bindings;
  bindingRules: readonly BindingRule[];
  defaultBinding: 'normal' | 'none';
  hooks: HookRegistry;
  dkim: DkimSigner;
  /** Counts accepted recipients per binding (the metrics). */
  counter: { received(binding: string, recipients: number): void };
  /** The webhooks' reception records. */
  feed: RecordFeed;
}

/** Set by the upstream MTA for Impulse alone; removed before the message is stored. */
const BINDING_HEADER = 'x-impulse-binding';
const BINDING_GROUP_HEADER = 'x-impulse-binding-group';
/** The sender's tenant, carried into every record of the message (webhooks filter on it). */
const TENANT_HEADER = 'x-impulse-tenant';
const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;

/** The whole DATA, unless it is refused anyway (too large, bare newline): then only read to its end. */
function readAll(stream: SMTPServerDataStream, bare: BareNewlineDetector): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => {
      bare.update(c);
      if (!stream.sizeExceeded && !bare.found) chunks.push(c);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

export class Intake {
  private readonly servers: SMTPServer[] = [];
  private readonly policies: ListenerPolicy[] = [];
  private listening = false;

  constructor(private readonly deps: IntakeDeps) {}

  /** SMTP sessions open now. */
  get sessions(): number {
    return this.policies.reduce((n, p) => n + p.sessions, 0);
  }

  /** Every listener is bound and accepting. */
  get ready(): boolean {
    return this.listening;
  }

  /**
   * A reload: binding assignment rules apply to the next message, and AUTH users files are read
   * again (listener settings themselves change only at restart).
   */
  reconfigure(settings: Pick<IntakeDeps, 'bindingRules' | 'defaultBinding'>): void {
    Object.assign(this.deps, settings);
    for (const p of this.policies) p.reload();
  }

  /** Throws when a listener cannot be set up (its certificate or users file) or bound. */
  async start(): Promise<void> {
    for (const l of this.deps.listeners) {
      const policy = new ListenerPolicy(l, this.deps.log);
      this.policies.push(policy);
      const server = this.createServer(l, policy);
      if (l.reuse_port && !supportsReusePort(process.versions.node)) {
        throw new Error(`listener ${l.address}:${l.port}: reuse_port needs Node.js 22.12 or later (SO_REUSEPORT); this is ${process.version}`);
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: l.port, host: l.address, ...(l.reuse_port ? { reusePort: true } : {}) }, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.deps.log.warn({ event: 'intake_error', listener: `${l.address}:${l.port}`, err: err.message }, 'intake connection error'));
      server.server.on('connection', batchWrites);
      this.servers.push(server);
      this.deps.log.info({ event: 'listening', address: l.address, port: l.port }, 'SMTP intake listening');
    }
    this.listening = true;
  }

  /** Stops accepting; sessions in flight get until the server's close timeout to finish. */
  async close(): Promise<void> {
    this.listening = false;
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private createServer(l: ListenerConfig, policy: ListenerPolicy): SMTPServer {
    const tls = l.tls ? { key: readFileSync(l.tls.key), cert: readFileSync(l.tls.cert) } : {};
    return new CodedServer({
      name: this.deps.hostname,
      banner: 'Impulse',
      logger: false,
      closeTimeout: this.deps.closeTimeout,
      ...tls,
      ...policy.serverOptions(),
      onData: (stream, session, cb) => {
        this.receive(stream, session, l).then((text) => cb(null, text), (err: Error & { responseCode?: number }) => cb(err));
      },
    });
  }

  private async receive(stream: SMTPServerDataStream, session: SMTPServerSession, l: ListenerConfig): Promise<string> {
    const { log, clock } = this.deps;
    const detector = new BareNewlineDetector();
    const data = await readAll(stream, detector);
    const envelope = session.envelope;
    const sender = envelope.mailFrom ? envelope.mailFrom.address : '';
    const recipients = envelope.rcptTo.map((r) => r.address);
    if (stream.sizeExceeded) throw smtpError(552, `5.3.4 Message exceeds the limit of ${l.max_message_size} bytes`);
    const bare = detector.end();
    if (bare) {
      log.warn({ event: 'bare_newline_refused', client: session.remoteAddress, user: session.user, sender, recipients, bare: bare.kind, offset: bare.offset },
        'message refused: bare newline in DATA (possible SMTP smuggling)');
      throw smtpError(550, `5.5.2 Message contains a bare <${bare.kind}> at byte ${bare.offset}; lines must end with <CR><LF> (RFC 5321 2.3.8)`);
    }
    const now = clock.now();
    const qid = newQueueId(now);
    const fields = headerFields(data);
    const headers = parseHeaders(data, fields);
    const tenant = headers.get(TENANT_HEADER)?.trim();
    if (tenant !== undefined && !TENANT.test(tenant)) {
      throw smtpError(554, `5.6.0 X-Impulse-Tenant "${tenant.slice(0, 80)}": a tenant is 1 to 64 letters, digits, '.', '_' or '-'`);
    }
    const byDomain = recipientsByDomain(recipients);
    const msg: HookMessage = { qid, sender, recipients, headers };
    const bindings = await this.assignBindings(msg, byDomain.keys());
    const smtputf8 = Boolean(envelope.smtpUtf8);
    const header = receivedHeader({
      helo: session.hostNameAppearsAs, clientHostname: session.clientHostname, clientAddress: session.remoteAddress,
      hostname: this.deps.hostname, qid, secure: session.secure, authenticated: Boolean(session.user), smtputf8, recipients, now,
    });
    const content = removeHeaders(data, [BINDING_HEADER, BINDING_GROUP_HEADER, TENANT_HEADER], fields);
    const dkim = await this.deps.dkim.sign(msg, content, now);
    // UTF-8: a SMTPUTF8 recipient in its `for` clause is written as the client sent it.
    const body = Buffer.concat([Buffer.from(header, 'utf8'), Buffer.from(dkim.header, 'latin1'), content]);
    const messageId = headers.get('message-id');
    const requests = dsnRequests(envelope.rcptTo);
    const jobs = [...byDomain].map(([domain, rcpts]) => ({ domain, recipients: rcpts, binding: bindings.get(domain), dsn: requestsOf(requests, rcpts) }));
    const params = messageParams(envelope, data);
    try {
      await this.deps.enqueuer.enqueue({ qid, sender, jobs, body, receivedAt: now, messageId, tenant, ...params });
    } catch (err) {
      log.error({ event: 'reception_failed', client: session.remoteAddress, sender, recipients, err: (err as Error).message }, 'message not queued');
      if (err instanceof ReplicaShortfall) throw smtpError(451, `4.3.0 Temporary queue failure: ${err.message}, message not kept; try again later`);
      throw smtpError(451, '4.3.0 Temporary queue failure, try again later');
    }
    for (const j of jobs) this.deps.counter.received(this.deps.bindings.resolve(j.binding ?? {}, qid).name, j.recipients.length);
    logEvent(log, this.deps.feed, 'reception', 'received', () => ({
      qid, message_id: messageId, tenant, sender, recipients, size: body.length, client: session.remoteAddress, user: session.user,
      bindings: Object.fromEntries([...bindings].map(([d, c]) => [d, 'binding' in c ? c.binding : `group:${c.group}`])),
      ...(dkim.labels.length > 0 ? { dkim: dkim.labels } : {}),
    }));
    return `2.0.0 Ok queued as ${qid}`;
  }

  /** One binding decision per destination domain; a refusal refuses the whole message. */
  private async assignBindings(msg: HookMessage, domains: Iterable<string>): Promise<Map<string, BindingChoice>> {
    const { bindings, bindingRules, defaultBinding, hooks, log } = this.deps;
    const { qid, sender, headers } = msg;
    const bindingHeader = headers.get(BINDING_HEADER);
    const groupHeader = headers.get(BINDING_GROUP_HEADER);
    const header: BindingChoice | undefined = bindingHeader ? { binding: bindingHeader } : groupHeader ? { group: groupHeader } : undefined;
    const out = new Map<string, BindingChoice>();
    for (const domain of domains) {
      const a = await assignBinding({
        senderDomain: domainOf(sender), recipientDomain: domain, header,
        hook: async () => {
          if (!hooks.has('set_binding')) return undefined;
          return (await hooks.call('set_binding', msg, domain)).filter((c) => c !== undefined).pop();
        },
      }, bindingRules, bindings, defaultBinding);
      if (a.kind === 'refused') {
        log.warn({ event: 'binding_refused', qid, sender, domain, note: a.note }, 'no binding for this message: refused');
        throw smtpError(451, `4.3.5 No binding for mail to ${domain}: ${a.note}`);
      }
      if (a.note) log.warn({ event: 'binding_unknown', qid, sender, domain, note: a.note, decision: 'default' }, 'unknown binding: using the default binding');
      out.set(domain, a.choice);
    }
    return out;
  }
}

// SMTP intake on every configured listener. A message is answered 250 only once its body and
// jobs are in Redis; anything that stops that answers 451 4.3.0 and leaves nothing deliverable.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { type BindingChoice, type BindingRule, assignBinding } from '../binding/assign.js';
import type { Bindings } from '../binding/registry.js';
import { AddressSet } from '../core/cidr.js';
import { parseHeaders, removeHeaders } from '../core/headers.js';
import type { Clock } from '../core/clock.js';
import { newQueueId } from '../core/ids.js';
import type { ListenerConfig } from '../config/schema.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { HookMessage } from '../hooks/signatures.js';
import type { Enqueuer } from '../queue/enqueue.js';
import { domainOf, recipientsByDomain } from '../queue/job.js';
import { receivedHeader } from './received.js';

export interface IntakeDeps {
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
  /** Counts accepted recipients per binding (the metrics). */
  counter: { received(binding: string, recipients: number): void };
}

/** Set by the upstream MTA for Impulse alone; removed before the message is stored. */
const BINDING_HEADER = 'x-impulse-binding';
const BINDING_GROUP_HEADER = 'x-impulse-binding-group';

function smtpError(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

function readAll(stream: SMTPServerDataStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => {
      if (!stream.sizeExceeded) chunks.push(c);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

export class Intake {
  private readonly servers: SMTPServer[] = [];
  private open = 0;
  private listening = false;

  constructor(private readonly deps: IntakeDeps) {}

  /** SMTP sessions open now. */
  get sessions(): number {
    return this.open;
  }

  /** Every listener is bound and accepting. */
  get ready(): boolean {
    return this.listening;
  }

  /** A reload: binding assignment rules apply to the next message. */
  reconfigure(settings: Pick<IntakeDeps, 'bindingRules' | 'defaultBinding'>): void {
    Object.assign(this.deps, settings);
  }

  async start(): Promise<void> {
    for (const l of this.deps.listeners) {
      const server = this.createServer(l);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.port, l.address, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.deps.log.warn({ event: 'intake_error', listener: `${l.address}:${l.port}`, err: err.message }, 'intake connection error'));
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

  private createServer(l: ListenerConfig): SMTPServer {
    const { log } = this.deps;
    const relay = new AddressSet(l.relay_from);
    const tls = l.tls ? { key: readFileSync(l.tls.key), cert: readFileSync(l.tls.cert) } : {};
    return new SMTPServer({
      name: this.deps.hostname,
      banner: 'Impulse',
      size: l.max_message_size,
      // Our own checks give the enhanced status codes (552 5.3.4, 452 4.5.3) smtp-server would not.
      hideSize: true,
      hideENHANCEDSTATUSCODES: true,
      authOptional: true,
      disabledCommands: l.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      logger: false,
      closeTimeout: this.deps.closeTimeout,
      ...tls,
      onConnect: (session, cb) => {
        this.open++;
        if (relay.has(session.remoteAddress)) return cb();
        log.warn({ event: 'relay_refused', client: session.remoteAddress, listener: `${l.address}:${l.port}` }, 'client not in relay_from');
        cb(smtpError(554, `5.7.1 Relaying denied: ${session.remoteAddress} is not allowed to send through this server`));
      },
      onMailFrom: (address, _session, cb) => {
        const declared = Number((address.args as Record<string, string> | false || {}).SIZE ?? 0);
        if (declared > l.max_message_size) {
          return cb(smtpError(552, `5.3.4 Message size ${declared} exceeds the limit of ${l.max_message_size} bytes`));
        }
        cb();
      },
      onRcptTo: (address, session, cb) => {
        if (session.envelope.rcptTo.length >= l.max_recipients) {
          return cb(smtpError(452, `4.5.3 Too many recipients (limit ${l.max_recipients})`));
        }
        if (!/@[^@]+$/.test(address.address)) return cb(smtpError(501, '5.1.3 Recipient address must be fully qualified'));
        cb();
      },
      onClose: () => {
        this.open--;
      },
      onData: (stream, session, cb) => {
        this.receive(stream, session, l).then((text) => cb(null, text), (err: Error & { responseCode?: number }) => cb(err));
      },
    });
  }

  private async receive(stream: SMTPServerDataStream, session: SMTPServerSession, l: ListenerConfig): Promise<string> {
    const { log, clock } = this.deps;
    const data = await readAll(stream);
    if (stream.sizeExceeded) throw smtpError(552, `5.3.4 Message exceeds the limit of ${l.max_message_size} bytes`);
    const now = clock.now();
    const qid = newQueueId(now);
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const recipients = session.envelope.rcptTo.map((r) => r.address);
    const headers = parseHeaders(data);
    const bindings = await this.assignBindings(qid, sender, recipients, headers);
    const header = receivedHeader({
      helo: session.hostNameAppearsAs, clientHostname: session.clientHostname, clientAddress: session.remoteAddress,
      hostname: this.deps.hostname, qid, secure: session.secure, recipients, now,
    });
    const body = Buffer.concat([Buffer.from(header, 'latin1'), removeHeaders(data, [BINDING_HEADER, BINDING_GROUP_HEADER])]);
    const messageId = headers.get('message-id');
    try {
      await this.deps.enqueuer.enqueue({ qid, sender, recipients, body, receivedAt: now, messageId, bindings });
    } catch (err) {
      log.error({ event: 'reception_failed', client: session.remoteAddress, sender, recipients, err: (err as Error).message }, 'message not queued');
      throw smtpError(451, '4.3.0 Temporary queue failure, try again later');
    }
    for (const [domain, rcpts] of recipientsByDomain(recipients)) {
      this.deps.counter.received(this.deps.bindings.resolve(bindings.get(domain) ?? {}, qid).name, rcpts.length);
    }
    log.info({
      event: 'reception', qid, message_id: messageId, sender, recipients, size: body.length, client: session.remoteAddress,
      bindings: Object.fromEntries([...bindings].map(([d, c]) => [d, 'binding' in c ? c.binding : `group:${c.group}`])),
    }, 'received');
    return `2.0.0 Ok queued as ${qid}`;
  }

  /** One binding decision per destination domain; a refusal refuses the whole message. */
  private async assignBindings(qid: string, sender: string, recipients: string[], headers: Map<string, string>): Promise<Map<string, BindingChoice>> {
    const { bindings, bindingRules, defaultBinding, hooks, log } = this.deps;
    const bindingHeader = headers.get(BINDING_HEADER);
    const groupHeader = headers.get(BINDING_GROUP_HEADER);
    const header: BindingChoice | undefined = bindingHeader ? { binding: bindingHeader } : groupHeader ? { group: groupHeader } : undefined;
    const msg: HookMessage = { qid, sender, recipients, headers };
    const out = new Map<string, BindingChoice>();
    for (const domain of new Set(recipients.map(domainOf))) {
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

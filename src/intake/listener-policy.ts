// Who may use one listener and how much: relay_from, SMTP AUTH for everyone else when the
// listener has `auth`, and the per-session limits. Everything here answers before DATA.
import type { Logger } from 'pino';
import type { SMTPServerAddress, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import { AddressSet } from '../core/cidr.js';
import type { ListenerConfig } from '../config/schema.js';
import { SmtpAuth } from './auth.js';
import { mailRefusal, rcptRefusal } from './esmtp-params.js';
import { smtpError } from './reply.js';
import { UsersFile } from './users-file.js';

type Callback = (err?: Error | null) => void;

/**
 * Calls back once the current call stack has unwound, never from inside it. smtp-server 3.21.6
 * loses pipelined input when every command between one message's end and the next message's
 * end answers synchronously: SMTPStream.continue() clears its continuation after running it,
 * wiping the one the next message just set, and the session stalls.
 */
function later(cb: Callback): Callback {
  return (err) => process.nextTick(cb, err);
}

export class ListenerPolicy {
  readonly name: string;
  private readonly relay: AddressSet;
  private readonly auth: SmtpAuth | undefined;
  /** Sessions let in by onConnect and not closed yet (what max_clients counts), with the address relay_from was checked for. */
  private readonly admitted = new Map<string, { address: string; relayed: boolean }>();

  constructor(private readonly l: ListenerConfig, private readonly log: Logger) {
    this.name = `${l.address}:${l.port}`;
    this.relay = new AddressSet(l.relay_from);
    if (l.auth) {
      const users = new UsersFile(l.auth.users_file);
      log.info({ event: 'users_file_loaded', listener: this.name, file: users.path, users: users.size }, 'SMTP AUTH users read');
      this.auth = new SmtpAuth(users, l.auth.max_failures, log, this.name);
    }
  }

  get sessions(): number {
    return this.admitted.size;
  }

  reload(): void {
    this.auth?.reload();
  }

  /** The smtp-server options that carry this policy. */
  serverOptions(): SMTPServerOptions {
    const l = this.l;
    return {
      size: l.max_message_size,
      // EHLO offers SIZE with the limit, ENHANCEDSTATUSCODES, PIPELINING, 8BITMIME, SMTPUTF8 and
      // DSN; REQUIRETLS (RFC 8689) is not offered: Impulse cannot promise TLS on every later hop.
      hideSize: false,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: false,
      hideREQUIRETLS: true,
      maxCommandLength: l.max_command_length,
      socketTimeout: l.idle_timeout,
      // Without auth AUTH is never offered. With it, smtp-server requires AUTH (530) and counts
      // the commands before it; sessions from relay_from switch AUTH off for themselves.
      disabledCommands: l.auth ? [] : l.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      authOptional: !l.auth,
      authMethods: ['PLAIN', 'LOGIN'],
      authRequiredMessage: '5.7.0 Authentication required',
      // smtp-server refuses the command that reaches its count, so one more lets exactly
      // max_unauthenticated_commands through.
      maxAllowedUnauthenticatedCommands: l.max_unauthenticated_commands + 1,
      onConnect: (session, cb) => this.onConnect(session, cb),
      onClose: (session) => this.admitted.delete(session.id),
      onMailFrom: (address, session, cb) => this.onMailFrom(address, session, later(cb)),
      onRcptTo: (address, session, cb) => this.onRcptTo(address, session, later(cb)),
      ...(this.auth ? { onAuth: this.auth.onAuth.bind(this.auth) } : {}),
    };
  }

  private onConnect(session: SMTPServerSession, cb: Callback): void {
    const client = session.remoteAddress;
    if (this.admitted.size >= this.l.max_clients) {
      this.log.warn({ event: 'too_many_clients', client, listener: this.name, max_clients: this.l.max_clients }, 'intake session refused: max_clients reached');
      return cb(smtpError(421, `4.7.0 Too many connections (limit ${this.l.max_clients}), try again later`));
    }
    const relayed = this.relay.has(client);
    if (!relayed && !this.auth) {
      this.log.warn({ event: 'relay_refused', client, listener: this.name }, 'client not in relay_from');
      return cb(smtpError(554, `5.7.1 Relaying denied: ${client} is not allowed to send through this server`));
    }
    if (relayed && this.auth) session.disabledCommands = ['AUTH'];
    this.admitted.set(session.id, { address: client, relayed });
    cb();
  }

  /** relay_from for the session's address, as checked at connection unless the address changed since. */
  private relayed(session: SMTPServerSession): boolean {
    const a = this.admitted.get(session.id);
    return a !== undefined && a.address === session.remoteAddress ? a.relayed : this.relay.has(session.remoteAddress);
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback): void {
    // smtp-server already answers 530 before this; checked again so that no change of its
    // rules can ever open the relay.
    if (!session.user && !this.relayed(session)) return cb(smtpError(530, '5.7.0 Authentication required'));
    // A declared SIZE over the limit was refused by smtp-server already (552 5.3.4), as it offers SIZE.
    const refused = mailRefusal(address.address, address.args, Boolean(session.envelope.smtpUtf8), this.auth !== undefined);
    cb(refused ? smtpError(refused.code, refused.text) : undefined);
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback): void {
    if (session.envelope.rcptTo.length >= this.l.max_recipients) {
      return cb(smtpError(452, `4.5.3 Too many recipients (limit ${this.l.max_recipients})`));
    }
    const refused = rcptRefusal(address.address, address.args, Boolean(session.envelope.smtpUtf8));
    if (refused) return cb(smtpError(refused.code, refused.text));
    if (!/@[^@]+$/.test(address.address)) return cb(smtpError(501, '5.1.3 Recipient address must be fully qualified'));
    cb();
  }
}

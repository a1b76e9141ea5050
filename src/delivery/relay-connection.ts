// nodemailer's SMTP client as a relaying MTA needs it: each recipient's own DSN request (NOTIFY,
// ORCPT) on its RCPT TO, where nodemailer puts one request on every recipient; SMTPUTF8 on
// MAIL FROM for all SMTPUTF8 mail, where nodemailer adds it only for non-ASCII addresses; and the
// message dot-stuffed by dot-stuffing.ts. This reaches into the client's internals (_envelope,
// _recipientQueue, _supportedExtensions, _getDsnRcptToArgs, _sendCommand, _createSendStream),
// which is why package.json pins nodemailer to one version.
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { utf8AddrXtext, utf8AddressOf, xtext } from '../core/xtext.js';
import { type DataStream, stuffDotsFast } from './dot-stuffing.js';
import type { RecipientDsn } from './envelope.js';

/** The envelope nodemailer takes, and what this client adds to it. */
export interface RelayEnvelope extends SMTPConnection.Envelope {
  /** DSN requests by recipient; a recipient without one gets no NOTIFY or ORCPT. */
  recipientDsn?: Readonly<Record<string, RecipientDsn>> | undefined;
  /** The message was received with SMTPUTF8. */
  smtputf8?: boolean | undefined;
}

interface Internals {
  _envelope: RelayEnvelope | undefined;
  _recipientQueue: string[];
  _supportedExtensions: string[];
  _getDsnRcptToArgs(): string;
  _sendCommand(command: string): void;
  _createSendStream(callback: unknown): DataStream;
}

const base = SMTPConnection.prototype as unknown as Internals;

/**
 * ORCPT as its address type wants it (RFC 3461 4.2, RFC 6533 3): a utf-8 address as
 * utf-8-addr-xtext, \x{HEX}, whatever form it came in; any other as xtext.
 */
function orcptParam(orcpt: string): string {
  const semi = orcpt.indexOf(';');
  if (semi < 0) return xtext(orcpt);
  const type = orcpt.slice(0, semi);
  const address = orcpt.slice(semi + 1);
  if (type.toLowerCase() !== 'utf-8') return `${type};${xtext(address)}`;
  return `${type};${utf8AddrXtext(utf8AddressOf(address) ?? address)}`;
}

export class RelayConnection extends SMTPConnection {
  /** The EHLO keywords of the server, upper case: what the hop offers. */
  get extensions(): readonly string[] {
    return (this as unknown as Internals)._supportedExtensions;
  }

  _getDsnRcptToArgs(): string {
    const self = this as unknown as Internals;
    const requests = self._envelope?.recipientDsn;
    if (!requests || !self._supportedExtensions.includes('DSN')) return base._getDsnRcptToArgs.call(this);
    // Called by _sendRcpt right after it queued the recipient it writes RCPT TO for.
    const request = requests[self._recipientQueue[self._recipientQueue.length - 1]!];
    const args = [
      ...(request?.notify ? [`NOTIFY=${request.notify.join(',')}`] : []),
      ...(request?.orcpt ? [`ORCPT=${orcptParam(request.orcpt)}`] : []),
    ];
    return args.length > 0 ? ` ${args.join(' ')}` : '';
  }

  _sendCommand(command: string): void {
    const self = this as unknown as Internals;
    const add = self._envelope?.smtputf8 && command.startsWith('MAIL FROM:') && !/ SMTPUTF8\b/.test(command)
      && self._supportedExtensions.includes('SMTPUTF8');
    base._sendCommand.call(this, add ? `${command} SMTPUTF8` : command);
  }

  _createSendStream(callback: unknown): DataStream {
    return stuffDotsFast(base._createSendStream.call(this, callback));
  }
}

// What went wrong with TLS when an outbound session could not be set up, as the reply that
// defers the mail: the certificate failed verification (never followed by plain text), the
// handshake itself failed (followed by plain text only under tls_ifavailable_fallback), or
// tls: required met a server that does not offer STARTTLS.
import { TLSSocket } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import { type Reply, reply } from '../core/reply.js';
import type { TlsMode } from './tls-policy.js';
import { type TlsResultType, certificateResult } from './tls-requirement.js';

type TlsFailureKind = 'verify' | 'handshake' | 'not_offered';

/** A connection attempt refused for TLS reasons; `reply` is what the deferred mail gets. */
export class TlsError extends Error {
  readonly code = 'ETLS';

  constructor(readonly kind: TlsFailureKind, readonly reason: string, readonly reply: Reply, readonly resultType: TlsResultType) {
    super(reason);
    this.name = this.constructor.name;
  }
}

/**
 * The TLS failure behind `err`, raised while `conn` set its session up, or undefined when the
 * failure was not about TLS. `verifying` says whether certificates were being checked.
 */
export function tlsFailureOf(conn: SMTPConnection, err: Error & { code?: string }, verifying: boolean): 'verify' | 'handshake' | undefined {
  // Node sets authorizationError only once the handshake completed and the certificate was judged.
  if (verifying && conn._socket instanceof TLSSocket && conn._socket.authorizationError) return 'verify';
  // ETLS: STARTTLS refused, or the server closed during the handshake; upgrading: any other
  // error (protocol alert, reset, timeout) while the handshake ran.
  if (conn.upgrading || err.code === 'ETLS') return 'handshake';
  return undefined;
}

/** The RFC 8460 result type of a failure found by tlsFailureOf. */
export function resultOf(kind: 'verify' | 'handshake', conn: SMTPConnection): TlsResultType {
  if (kind === 'handshake') return 'validation-failure';
  const socket = conn._socket instanceof TLSSocket ? conn._socket : undefined;
  return certificateResult(socket?.authorizationError as unknown as string | undefined);
}

/** Advice Node.js 24 appends to certificate errors for a desktop user, not an MTA's operator. */
const NODE_CA_HINT = /; if the root CA is installed locally, try running Node\.js with --use-system-ca$/;

/**
 * The failure in a few words for a one-line reply: OpenSSL's reason ('wrong version number')
 * rather than its whole error string with codes and source file, the same on every Node.js.
 */
export function tlsReason(err: Error & { reason?: unknown; library?: unknown }): string {
  const text = typeof err.library === 'string' && typeof err.reason === 'string' ? err.reason : err.message;
  return text.replace(/\s+/g, ' ').trim().replace(NODE_CA_HINT, '');
}

/**
 * The reply for a TLS failure with the server at `where` (`host [address]:port`); `policy` names
 * the published policy that demanded TLS (`the MTA-STS policy of example.com`), if one did.
 */
export function tlsFailureReply(kind: TlsFailureKind, where: string, reason: string, mode: TlsMode, policy?: string): Reply {
  if (policy !== undefined) {
    const what = kind === 'not_offered' ? `${where} does not offer STARTTLS` : kind === 'verify'
      ? `TLS certificate verification failed for ${where}: ${reason}` : `TLS handshake with ${where} failed: ${reason}`;
    return reply(451, '4.7.5', `[internal] ${policy} requires authenticated TLS and ${what}`);
  }
  switch (kind) {
    case 'verify':
      return reply(451, '4.7.5', `[internal] TLS certificate verification failed for ${where}: ${reason}`);
    case 'handshake':
      return reply(451, '4.7.5', `[internal] TLS handshake with ${where} failed and ${mode === 'required'
        ? 'tls is required' : 'tls_ifavailable_fallback is false'}: ${reason}`);
    case 'not_offered':
      return reply(451, '4.7.4', `[internal] TLS is required but ${where} does not offer STARTTLS`);
  }
}

// The seam between the initiator and the network: opens an SMTP client session to one address
// from one source address, up to a usable session (greeting, EHLO, STARTTLS per the TLS policy,
// see docs/tls.md). Tests replace it to produce errors loopback cannot (socket, ioctl, unreachable network).
import type { SecureContext } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Reply } from '../core/reply.js';
import { batchWrites } from '../core/coalesce.js';
import {
  CONN_ERROR_BIND, CONN_ERROR_CONNECT, CONN_ERROR_CONNECT_NETWORK, CONN_ERROR_CONNECT_TIMEOUT, CONN_ERROR_IOCTL, CONN_ERROR_SOCKET,
} from './flags.js';
import { type RelayEnvelope, RelayConnection } from './relay-connection.js';
import { TlsError, resultOf, tlsFailureOf, tlsFailureReply, tlsReason } from './tls-failure.js';
import { judgeSession } from './tls-judge.js';
import { type TlsOutcome, type TlsPolicy, tlsOptions } from './tls-policy.js';
import type { PolicyCheck, TlsRequirement } from './tls-requirement.js';

/** The requirements a connection is attempted under (a refused host is never attempted). */
export type AttemptRequirement = Exclude<TlsRequirement, { kind: 'refused' }>;

export interface ConnectSpec extends TlsPolicy {
  address: string;
  port: number;
  /** MX host name: TLS server name, and the name tls_verify: host checks. */
  host: string;
  localAddress: string | undefined;
  ehloHostname: string;
  connectTimeout: number;
  greetingTimeout: number;
  dataTimeout: number;
  /** What the destination's published policy asks of this host; it overrides the TLS options where it is stricter. */
  requirement: AttemptRequirement;
}

/** An SMTP client session; nodemailer's SMTPConnection in production. */
export interface SmtpClient {
  readonly secure: boolean;
  readonly tls: TlsOutcome;
  /** What the server offered in its EHLO reply (upper case keywords: DSN, SMTPUTF8, 8BITMIME, …). */
  readonly extensions: readonly string[];
  /** True once the session has ended, by either side. */
  readonly closed: boolean;
  /** Calls the listener once the socket has closed, both ways: a receiver counting sessions no longer counts it. */
  onClose(listener: () => void): void;
  offClose(listener: () => void): void;
  /** The session judged under another policy (a sibling's, in testing mode), by the checks its own session would get. */
  judge(requirement: TlsRequirement, host: string): PolicyCheck | undefined;
  send(envelope: RelayEnvelope, body: Buffer): Promise<SMTPConnection.SentMessageInfo>;
  reset(): Promise<void>;
  quit(): void;
  close(): void;
}

export interface ConnectError extends Error {
  code?: string;
  originalCode?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  timeoutType?: string;
  /** The reply decided here rather than said by the server (TLS failures). */
  reply?: Reply;
}

export type Connector = (spec: ConnectSpec) => Promise<SmtpClient>;

/** Replies after the greeting before a session is usable, each allowed data_timeout: EHLO, STARTTLS, EHLO again. */
const SETUP_STAGES = 3;

/**
 * The production connector. `trust` is the context certificates are verified against
 * (tls-trust.ts). Under tls: ifavailable with tls_ifavailable_fallback, a failed TLS handshake
 * is followed at once by a plain-text session to the same address; the client says so in `tls.fallback`.
 */
export function smtpConnector(trust: SecureContext | undefined): Connector {
  return async (asked) => {
    const spec = { ...asked, ...effectivePolicy(asked) };
    try {
      return await open(spec, trust, spec.tls !== 'no', undefined);
    } catch (err) {
      const fallsBack = err instanceof TlsError && err.kind === 'handshake' && spec.tls === 'ifavailable' && spec.tlsIfavailableFallback;
      if (!fallsBack) throw err;
      return open(spec, trust, false, err.reason);
    }
  };
}

/** The policy that demands TLS, as a reply names it; undefined when only the options do. */
function policyName(r: AttemptRequirement): string | undefined {
  if (r.kind === 'sts-enforce') return `the MTA-STS policy of ${r.policy.domain}`;
  if (r.kind === 'dane' || r.kind === 'dane-encrypt') return `DANE (TLSA ${r.policy.id})`;
  return undefined;
}

/**
 * The TLS options a requirement imposes, with no fallback: MTA-STS enforce is tls: required and
 * tls_verify: host; DANE is tls: required with the chain judged against the TLSA records once the
 * session is up (tls-judge.ts), the CAs and names of WebPKI playing no part (with no usable record,
 * nothing is judged: encryption alone).
 */
function effectivePolicy(spec: ConnectSpec): TlsPolicy {
  if (spec.requirement.kind === 'sts-enforce') return { tls: 'required', tlsVerify: 'host', tlsIfavailableFallback: false };
  if (spec.requirement.kind === 'dane' || spec.requirement.kind === 'dane-encrypt') return { tls: 'required', tlsVerify: 'no', tlsIfavailableFallback: false };
  return spec;
}

function open(spec: ConnectSpec, trust: SecureContext | undefined, startTls: boolean, fallback: string | undefined): Promise<SmtpClient> {
  return new Promise((resolve, reject) => {
    const where = `${spec.host} [${spec.address}]:${spec.port}`;
    const conn = new RelayConnection({
      host: spec.address,
      port: spec.port,
      name: spec.ehloHostname,
      localAddress: spec.localAddress,
      connectionTimeout: spec.connectTimeout,
      greetingTimeout: spec.greetingTimeout,
      socketTimeout: spec.dataTimeout,
      ignoreTLS: !startTls,
      // tls: required is checked once the session is up, so a server that does not offer
      // STARTTLS gets a QUIT rather than a STARTTLS it never announced.
      requireTLS: false,
      tls: tlsOptions(spec.host, spec.tlsVerify, trust),
    });
    let ready = false;
    let closed = false;
    // nodemailer times the greeting and then only inactivity, so a server trickling its EHLO or
    // STARTTLS replies a byte at a time would hold the attempt forever: bound the whole set-up.
    const setupMs = spec.connectTimeout + spec.greetingTimeout + SETUP_STAGES * spec.dataTimeout;
    const setupTimer = setTimeout(() => {
      conn.close();
      reject(Object.assign(new Error(`session not ready within ${setupMs} ms (connect, greeting, EHLO, STARTTLS)`), { code: 'ETIMEDOUT', timeoutType: 'SETUP' }));
    }, setupMs);
    const fail = (err: ConnectError) => {
      clearTimeout(setupTimer);
      const kind = tlsFailureOf(conn, err, spec.tlsVerify !== 'no');
      if (!kind) {
        reject(err);
        return;
      }
      const reason = tlsReason(err);
      reject(new TlsError(kind, reason, tlsFailureReply(kind, where, reason, spec.tls, policyName(spec.requirement)), resultOf(kind, conn)));
    };
    conn.on('error', (err: Error) => {
      if (!ready) fail(err);
    });
    conn.once('end', () => {
      closed = true;
    });
    conn.connect((err) => {
      // A server that closes silently before its greeting is reported here, not as 'error'.
      if (err) {
        fail(err);
        return;
      }
      ready = true;
      clearTimeout(setupTimer);
      if (conn._socket) batchWrites(conn._socket);
      if (spec.tls === 'required' && !conn.secure) {
        conn.quit();
        reject(new TlsError('not_offered', 'STARTTLS not offered', tlsFailureReply('not_offered', where, '', spec.tls, policyName(spec.requirement)), 'starttls-not-supported'));
        return;
      }
      const tls: TlsOutcome = {
        verified: conn.secure ? spec.tlsVerify : 'no',
        ...(fallback === undefined ? {} : { fallback }),
        ...judgeSession(spec.requirement, conn.secure ? conn._socket || undefined : undefined, spec.host),
      };
      // Only EHLO has gone over the session: no mail goes to a server DANE does not vouch for.
      if (tls.policy?.mode === 'enforce' && tls.policy.result !== 'success') {
        conn.quit();
        const reason = tls.policy.reason ?? tls.policy.result;
        reject(new TlsError('verify', reason, tlsFailureReply('verify', where, reason, spec.tls, policyName(spec.requirement)), tls.policy.result));
        return;
      }
      resolve({
        get secure() {
          return conn.secure;
        },
        tls,
        // A getter: the list is rebuilt at the EHLO after STARTTLS.
        get extensions() {
          return conn.extensions;
        },
        get closed() {
          return closed;
        },
        // nodemailer says 'end' as soon as it closes its side; the socket's own 'close' comes once
        // both sides have (the socket is replaced at STARTTLS, so it is read now, not earlier).
        onClose: (listener) => {
          const socket = conn._socket;
          if (socket && !socket.closed) socket.once('close', listener);
          else conn.once('end', listener);
        },
        offClose: (listener) => {
          if (conn._socket) conn._socket.off('close', listener);
          conn.off('end', listener);
        },
        judge: (requirement, host) => judgeSession(requirement, conn.secure ? conn._socket || undefined : undefined, host).policy,
        send: (envelope, body) => new Promise((res, rej) => conn.send(envelope, body, (e, info) => (e ? rej(e) : res(info)))),
        reset: () => new Promise((res, rej) => conn.reset((e) => (e ? rej(e) : res()))),
        quit: () => conn.quit(),
        close: () => conn.close(),
      });
    });
  });
}

/** The CONN_ERROR_* a failed connection attempt stands for. */
export function classifyConnectError(err: ConnectError): number {
  const code = err.originalCode ?? err.code;
  switch (code) {
    case 'EADDRNOTAVAIL':
      return CONN_ERROR_BIND;
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
    case 'ENETDOWN':
    case 'EHOSTDOWN':
      return CONN_ERROR_CONNECT_NETWORK;
    case 'EMFILE':
    case 'ENFILE':
    case 'ENOBUFS':
    case 'ENOMEM':
      return CONN_ERROR_SOCKET;
    case 'ENOTTY':
    case 'ENOTSOCK':
      // Setting the socket's options (non-blocking, keepalive) failed: Momentum's ioctl stage.
      return CONN_ERROR_IOCTL;
    case 'ETIMEDOUT':
      // A greeting or TLS timeout is a server that accepted and then stalled: a protocol
      // failure of that address, not a connect timeout.
      return err.timeoutType === 'CONNECT_TIMEOUT' ? CONN_ERROR_CONNECT_TIMEOUT : CONN_ERROR_CONNECT;
    default:
      return CONN_ERROR_CONNECT;
  }
}

// The seam between the initiator and the network: opens an SMTP client session to one address
// from one source address, up to a usable session (greeting, EHLO, STARTTLS per policy).
// Tests replace it to produce errors loopback cannot (socket, ioctl, unreachable network).
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import {
  CONN_ERROR_BIND, CONN_ERROR_CONNECT, CONN_ERROR_CONNECT_NETWORK, CONN_ERROR_CONNECT_TIMEOUT, CONN_ERROR_IOCTL, CONN_ERROR_SOCKET,
} from './flags.js';

export interface ConnectSpec {
  address: string;
  port: number;
  /** MX host name: TLS server name. */
  host: string;
  localAddress: string | undefined;
  ehloHostname: string;
  connectTimeout: number;
  greetingTimeout: number;
  dataTimeout: number;
  tls: 'ifavailable' | 'required' | 'no';
}

export interface SmtpEnvelope {
  from: string;
  to: string[];
}

/** An SMTP client session; nodemailer's SMTPConnection in production. */
export interface SmtpClient {
  readonly secure: boolean;
  /** True once the session has ended, by either side. */
  readonly closed: boolean;
  onClose(listener: () => void): void;
  offClose(listener: () => void): void;
  send(envelope: SmtpEnvelope, body: Buffer): Promise<SMTPConnection.SentMessageInfo>;
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
}

export type Connector = (spec: ConnectSpec) => Promise<SmtpClient>;

export const smtpConnector: Connector = (spec) => new Promise((resolve, reject) => {
  const conn = new SMTPConnection({
    host: spec.address,
    port: spec.port,
    name: spec.ehloHostname,
    localAddress: spec.localAddress,
    connectionTimeout: spec.connectTimeout,
    greetingTimeout: spec.greetingTimeout,
    socketTimeout: spec.dataTimeout,
    ignoreTLS: spec.tls === 'no',
    requireTLS: spec.tls === 'required',
    // Opportunistic TLS authenticates nobody: verification is a policy of its own (tls_verify).
    tls: { rejectUnauthorized: false, servername: spec.host },
  });
  let ready = false;
  let closed = false;
  conn.on('error', (err: Error) => {
    if (!ready) reject(err);
  });
  conn.once('end', () => {
    closed = true;
  });
  conn.connect(() => {
    ready = true;
    resolve({
      get secure() {
        return conn.secure;
      },
      get closed() {
        return closed;
      },
      onClose: (listener) => conn.once('end', listener),
      offClose: (listener) => conn.off('end', listener),
      send: (envelope, body) => new Promise((res, rej) => conn.send(envelope, body, (err, info) => (err ? rej(err) : res(info)))),
      reset: () => new Promise((res, rej) => conn.reset((err) => (err ? rej(err) : res()))),
      quit: () => conn.quit(),
      close: () => conn.close(),
    });
  });
});

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

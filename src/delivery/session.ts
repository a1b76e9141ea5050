// One SMTP session to one address with nodemailer's client: connect, greeting, EHLO, STARTTLS
// per policy, then one transaction. Failures before the transaction mean "try the next
// address"; failures inside it become per-recipient replies.
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { type Reply, parseReply, reply } from '../core/reply.js';
import type { Target } from './route.js';

export interface SessionOptions {
  ehloHostname: string;
  connectTimeout: number;
  greetingTimeout: number;
  dataTimeout: number;
  tls: 'ifavailable' | 'required' | 'no';
  localAddress?: string | undefined;
}

export interface Envelope {
  sender: string;
  recipients: string[];
  body: Buffer;
}

export interface RecipientReply {
  recipient: string;
  reply: Reply;
}

export type SessionResult =
  | { kind: 'unavailable'; reply: Reply; error: string }
  | { kind: 'transaction'; replies: RecipientReply[] };

interface SmtpError extends Error {
  code?: string;
  originalCode?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  recipient?: string;
  rejectedErrors?: SmtpError[];
}

function replyOfError(err: SmtpError, fallback: Reply): Reply {
  if (err.response) {
    const parsed = parseReply(err.response);
    if (parsed) return parsed;
  }
  return fallback;
}

function connectionLost(err: SmtpError, stage: string): Reply {
  const why = err.originalCode ?? err.code ?? 'error';
  if (why === 'ETIMEDOUT') return reply(451, '4.4.2', `[internal] timed out ${stage}: ${err.message}`);
  return reply(451, '4.4.2', `[internal] connection lost ${stage} (${why}): ${err.message}`);
}

function connect(conn: SMTPConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => {
      conn.removeListener('error', reject);
      resolve();
    });
  });
}

function send(conn: SMTPConnection, env: Envelope): Promise<SMTPConnection.SentMessageInfo> {
  return new Promise((resolve, reject) => {
    conn.send({ from: env.sender, to: env.recipients }, env.body, (err, info) => (err ? reject(err) : resolve(info)));
  });
}

function rejectedReplies(errors: readonly SmtpError[] | undefined): Map<string, Reply> {
  const out = new Map<string, Reply>();
  for (const r of errors ?? []) {
    if (r.recipient) out.set(r.recipient, replyOfError(r, connectionLost(r, 'at RCPT TO')));
  }
  return out;
}

function transactionReplies(env: Envelope, err: SmtpError): RecipientReply[] {
  const perRecipient = rejectedReplies(err.rejectedErrors);
  const common = err.code === 'EENVELOPE' || err.code === 'EMESSAGE'
    ? replyOfError(err, connectionLost(err, `at ${err.command ?? 'transaction'}`))
    : connectionLost(err, `during ${err.command ?? 'the transaction'}`);
  return env.recipients.map((recipient) => ({ recipient, reply: perRecipient.get(recipient) ?? common }));
}

export async function runSession(target: Target, env: Envelope, opts: SessionOptions): Promise<SessionResult> {
  const conn = new SMTPConnection({
    host: target.address,
    port: target.port,
    name: opts.ehloHostname,
    localAddress: opts.localAddress,
    connectionTimeout: opts.connectTimeout,
    greetingTimeout: opts.greetingTimeout,
    socketTimeout: opts.dataTimeout,
    ignoreTLS: opts.tls === 'no',
    requireTLS: opts.tls === 'required',
    // Opportunistic TLS authenticates nobody: verification is a policy of its own (tls_verify).
    tls: { rejectUnauthorized: false, servername: target.host },
  });
  conn.on('error', () => {});
  try {
    try {
      await connect(conn);
    } catch (err) {
      const e = err as SmtpError;
      const fallback = e.code === 'ETLS'
        ? reply(451, '4.7.5', `[internal] STARTTLS failed with ${target.host}: ${e.message}`)
        : connectionLost(e, 'before the transaction');
      return { kind: 'unavailable', reply: replyOfError(e, fallback), error: e.originalCode ?? e.code ?? 'error' };
    }
    let info: SMTPConnection.SentMessageInfo;
    try {
      info = await send(conn, env);
    } catch (err) {
      return { kind: 'transaction', replies: transactionReplies(env, err as SmtpError) };
    }
    const accepted = parseReply(info.response) ?? reply(250, '2.0.0', info.response);
    const perRecipient = rejectedReplies((info as { rejectedErrors?: SmtpError[] }).rejectedErrors);
    return {
      kind: 'transaction',
      replies: env.recipients.map((recipient) => ({ recipient, reply: perRecipient.get(recipient) ?? accepted })),
    };
  } finally {
    conn.quit();
    // QUIT is a courtesy: a peer that never answers it must not hold the socket open.
    setTimeout(() => conn.close(), 5000).unref();
  }
}

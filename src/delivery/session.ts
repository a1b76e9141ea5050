// One SMTP transaction on a connected client: MAIL, RCPT per recipient, DATA. Every outcome,
// including a connection lost half-way, becomes a per-recipient SMTP reply.
import { type Reply, parseReply, reply } from '../core/reply.js';
import type { ConnectError, SmtpClient } from './connector.js';

export interface Envelope {
  sender: string;
  recipients: string[];
  body: Buffer;
}

export interface RecipientReply {
  recipient: string;
  reply: Reply;
}

interface TransactionError extends ConnectError {
  recipient?: string;
  rejectedErrors?: TransactionError[];
}

function replyOfError(err: TransactionError, fallback: Reply): Reply {
  return (err.response ? parseReply(err.response) : undefined) ?? fallback;
}

function connectionLost(err: TransactionError, stage: string): Reply {
  const why = err.originalCode ?? err.code ?? 'error';
  if (why === 'ETIMEDOUT') return reply(451, '4.4.2', `[internal] timed out ${stage}: ${err.message}`);
  return reply(451, '4.4.2', `[internal] connection lost ${stage} (${why}): ${err.message}`);
}

function rejectedReplies(errors: readonly TransactionError[] | undefined): Map<string, Reply> {
  const out = new Map<string, Reply>();
  for (const r of errors ?? []) {
    if (r.recipient) out.set(r.recipient, replyOfError(r, connectionLost(r, 'at RCPT TO')));
  }
  return out;
}

export async function runTransaction(client: SmtpClient, env: Envelope): Promise<RecipientReply[]> {
  try {
    const info = await client.send({ from: env.sender, to: env.recipients }, env.body);
    const accepted = parseReply(info.response) ?? reply(250, '2.0.0', info.response);
    const perRecipient = rejectedReplies((info as { rejectedErrors?: TransactionError[] }).rejectedErrors);
    return env.recipients.map((recipient) => ({ recipient, reply: perRecipient.get(recipient) ?? accepted }));
  } catch (e) {
    const err = e as TransactionError;
    const perRecipient = rejectedReplies(err.rejectedErrors);
    const common = err.code === 'EENVELOPE' || err.code === 'EMESSAGE'
      ? replyOfError(err, connectionLost(err, `at ${err.command ?? 'transaction'}`))
      : connectionLost(err, `during ${err.command ?? 'the transaction'}`);
    return env.recipients.map((recipient) => ({ recipient, reply: perRecipient.get(recipient) ?? common }));
  }
}

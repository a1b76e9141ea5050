// One SMTP transaction on a connected client: MAIL, RCPT per recipient, DATA. Every outcome,
// including a connection lost half-way or a transaction that ran out of time, becomes a
// per-recipient SMTP reply.
import { type Reply, parseReply, reply } from '../core/reply.js';
import { withTimeout } from '../core/timeout.js';
import type { ConnectError, SmtpClient } from './connector.js';

interface Envelope {
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

/**
 * The longest a transaction may take: data_timeout for each stage (MAIL, each RCPT, DATA, the
 * content, the final reply). data_timeout alone is inactivity, which a server trickling a byte
 * at a time never reaches; this bounds such a tarpit without cutting off a server that answers
 * each command within data_timeout.
 */
function transactionStages(recipients: number): number {
  return recipients + 4;
}

/**
 * RFC 5321 §4.5.3.1.10: 552 to RCPT is RFC 821's code for "too many recipients", which is 452;
 * clients SHOULD take it as temporary, so those recipients are retried in a later transaction
 * instead of bounced.
 */
function rcptReply(r: Reply): Reply {
  if (r.code !== 552) return r;
  return reply(452, `4${r.enhanced.slice(1)}`, `${r.text} (552 to RCPT TO taken as 452, RFC 5321 4.5.3.1.10)`);
}

function replyOfError(err: TransactionError, fallback: Reply): Reply {
  return (err.response ? parseReply(err.response) : undefined) ?? fallback;
}

// nodemailer names a socket failure 'CONN', and a send on a closed session 'API', whatever the stage.
function stageOf(err: TransactionError): string {
  return err.command && err.command !== 'CONN' && err.command !== 'API' ? err.command : 'the transaction';
}

function connectionLost(err: TransactionError, stage: string): Reply {
  const why = err.originalCode ?? err.code ?? 'error';
  if (why === 'ETIMEDOUT') return reply(451, '4.4.2', `[internal] timed out ${stage}: no data from the server within data_timeout (${err.message})`);
  return reply(451, '4.4.2', `[internal] connection lost ${stage} (${why}): ${err.message}`);
}

function rejectedReplies(errors: readonly TransactionError[] | undefined): Map<string, Reply> {
  const out = new Map<string, Reply>();
  for (const r of errors ?? []) {
    if (r.recipient) out.set(r.recipient, rcptReply(replyOfError(r, connectionLost(r, 'at RCPT TO'))));
  }
  return out;
}

class DeadlineExceeded extends Error {
  constructor() {
    super('transaction deadline exceeded');
    this.name = this.constructor.name;
  }
}

export async function runTransaction(client: SmtpClient, env: Envelope, dataTimeout: number): Promise<RecipientReply[]> {
  const stages = transactionStages(env.recipients.length);
  try {
    const info = await withTimeout(client.send({ from: env.sender, to: env.recipients }, env.body), stages * dataTimeout, () => {
      throw new DeadlineExceeded();
    });
    const accepted = parseReply(info.response) ?? reply(250, '2.0.0', info.response);
    const perRecipient = rejectedReplies((info as { rejectedErrors?: TransactionError[] }).rejectedErrors);
    return env.recipients.map((recipient) => ({ recipient, reply: perRecipient.get(recipient) ?? accepted }));
  } catch (e) {
    if (e instanceof DeadlineExceeded) {
      // The session is stuck mid-transaction and cannot be reused. Whether the server kept the
      // message is unknown, so it is retried like a transaction whose final reply was lost.
      client.close();
      const late = reply(451, '4.4.2', `[internal] timed out: transaction not finished within ${stages * dataTimeout} ms (data_timeout for each of ${stages} stages)`);
      return env.recipients.map((recipient) => ({ recipient, reply: late }));
    }
    const err = e as TransactionError;
    const perRecipient = rejectedReplies(err.rejectedErrors);
    const common = err.code === 'EENVELOPE' || err.code === 'EMESSAGE'
      ? replyOfError(err, connectionLost(err, `at ${stageOf(err)}`))
      : connectionLost(err, `during ${stageOf(err)}`);
    return env.recipients.map((recipient) => ({ recipient, reply: perRecipient.get(recipient) ?? common }));
  }
}

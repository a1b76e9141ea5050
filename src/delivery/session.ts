// One SMTP transaction on a connected client: MAIL, RCPT per recipient, DATA. Every outcome,
// including a connection lost half-way or a transaction that ran out of time, becomes a
// per-recipient SMTP reply.
import { type Reply, parseReply, reply } from '../core/reply.js';
import { withTimeout } from '../core/timeout.js';
import type { ConnectError, SmtpClient } from './connector.js';
import type { Envelope } from './envelope.js';
import { hopRefusal, relayEnvelope } from './next-hop.js';

/** Where in a transaction a server gave its reply (shaping rules can watch one phase). */
type TransactionPhase = 'mail' | 'rcpt' | 'data';

export interface RecipientReply {
  recipient: string;
  reply: Reply;
  /** Set on replies the server gave; Impulse's own carry none. */
  phase?: TransactionPhase | undefined;
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

function phaseOf(command: string | undefined): TransactionPhase {
  return command === 'MAIL FROM' ? 'mail' : command === 'RCPT TO' ? 'rcpt' : 'data';
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

/**
 * The client refused to send a message larger than the SIZE the hop announced (RFC 1870): as
 * permanent as the 552 the hop would give at the end of DATA.
 */
function tooLarge(err: TransactionError, where: string, size: number): Reply | undefined {
  const limit = err.code === 'EMESSAGE' && !err.response ? /larger than allowed (\d+)/.exec(err.message)?.[1] : undefined;
  return limit ? reply(552, '5.3.4', `[internal] ${where} takes messages of up to ${limit} bytes (SIZE); this one has ${size}`) : undefined;
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

/** `where` names the server in replies Impulse writes itself (`host [address]`). */
export async function runTransaction(client: SmtpClient, env: Envelope, dataTimeout: number, where: string): Promise<RecipientReply[]> {
  const refused = hopRefusal(client.extensions, env, where);
  if (refused) return env.recipients.map((recipient) => ({ recipient, reply: refused }));
  const stages = transactionStages(env.recipients.length);
  try {
    const info = await withTimeout(client.send(relayEnvelope(env), env.body), stages * dataTimeout, () => {
      throw new DeadlineExceeded();
    });
    const accepted = parseReply(info.response) ?? reply(250, '2.0.0', info.response);
    const perRecipient = rejectedReplies((info as { rejectedErrors?: TransactionError[] }).rejectedErrors);
    return env.recipients.map((recipient) => {
      const rejected = perRecipient.get(recipient);
      return rejected ? { recipient, reply: rejected, phase: 'rcpt' } : { recipient, reply: accepted, phase: 'data' };
    });
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
    const common = tooLarge(err, where, env.body.length) ?? (err.code === 'EENVELOPE' || err.code === 'EMESSAGE'
      ? replyOfError(err, connectionLost(err, `at ${stageOf(err)}`))
      : connectionLost(err, `during ${stageOf(err)}`));
    const phase = phaseOf(err.command);
    return env.recipients.map((recipient) => {
      const rejected = perRecipient.get(recipient);
      return rejected ? { recipient, reply: rejected, phase: 'rcpt' } : { recipient, reply: common, phase };
    });
  }
}

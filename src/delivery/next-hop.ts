// What a message asks of the next hop, by what that hop offered in EHLO: the ESMTP parameters
// passed on (BODY=8BITMIME, SMTPUTF8, SIZE, DSN's RET, ENVID, NOTIFY, ORCPT), or why it cannot
// take the message at all. Nothing is rewritten: mail a hop cannot carry fails with a DSN.
import { isAscii } from 'node:buffer';
import { type Reply, reply } from '../core/reply.js';
import type { Envelope } from './envelope.js';
import type { RelayEnvelope } from './relay-connection.js';

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Why the hop `where` cannot take the transaction, as the reply every recipient gets, or
 * undefined. UTF-8 envelope addresses need SMTPUTF8 (RFC 6531 3.4); 8-bit content needs 8BITMIME
 * (RFC 6152 3: never 8-bit bytes to a 7-bit hop; there is no downgrade).
 */
export function hopRefusal(extensions: readonly string[], env: Envelope, where: string): Reply | undefined {
  if (!extensions.includes('SMTPUTF8') && (NON_ASCII.test(env.sender) || env.recipients.some((r) => NON_ASCII.test(r)))) {
    return reply(553, '5.6.7', `[internal] ${where} does not offer SMTPUTF8, which the UTF-8 address(es) of this message need`);
  }
  if (env.params.eightBit && !extensions.includes('8BITMIME') && !isAscii(env.body)) {
    return reply(554, '5.6.3', `[internal] ${where} does not offer 8BITMIME and the message has 8-bit content (no conversion is made)`);
  }
  return undefined;
}

/** The envelope nodemailer sends; it adds each parameter only where the hop offers its extension. */
export function relayEnvelope(env: Envelope): RelayEnvelope {
  const p = env.params;
  return {
    from: env.sender,
    to: [...env.recipients],
    size: env.body.length,
    ...(p.eightBit ? { use8BitMime: true } : {}),
    ...(p.smtputf8 ? { smtputf8: true } : {}),
    ...(p.ret || p.envid ? { dsn: { ...(p.ret ? { ret: p.ret } : {}), ...(p.envid ? { envid: p.envid } : {}) } } : {}),
    ...(p.dsn ? { recipientDsn: p.dsn } : {}),
  };
}

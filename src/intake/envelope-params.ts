// What intake keeps of a transaction's ESMTP parameters (DSN's RET, ENVID, NOTIFY and ORCPT,
// BODY=8BITMIME, SMTPUTF8), per message and per recipient, in the form jobs carry them: ENVID and
// ORCPT as the UTF-8 text their xtext stood for.
import { isAscii } from 'node:buffer';
import type { SMTPServerAddress, SMTPServerEnvelope } from 'smtp-server';
import { utf8OfXtextBytes } from '../core/xtext.js';
import type { EnvelopeParams, Notify, RecipientDsn } from '../delivery/envelope.js';

/**
 * The message's own parameters; only those the client gave. 8-bit content counts as BODY=8BITMIME
 * even when the client did not declare it: the next hop must be told (RFC 6152 3).
 */
export function messageParams(envelope: SMTPServerEnvelope, body: Buffer): Omit<EnvelopeParams, 'dsn'> {
  const ret = envelope.dsn?.ret;
  const envid = envelope.dsn?.envid ? utf8OfXtextBytes(envelope.dsn.envid) : undefined;
  return {
    ...(ret === 'FULL' || ret === 'HDRS' ? { ret } : {}),
    ...(envid ? { envid } : {}),
    ...(envelope.bodyType === '8bitmime' || !isAscii(body) ? { eightBit: true as const } : {}),
    ...(envelope.smtpUtf8 ? { smtputf8: true as const } : {}),
  };
}

/** The DSN requests of the recipients that made one, by address. */
export function dsnRequests(rcptTo: readonly SMTPServerAddress[]): Map<string, RecipientDsn> {
  const out = new Map<string, RecipientDsn>();
  for (const r of rcptTo) {
    if (!r.dsn || (!r.dsn.notify && !r.dsn.orcpt)) continue;
    out.set(r.address, {
      ...(r.dsn.notify ? { notify: r.dsn.notify as Notify[] } : {}), ...(r.dsn.orcpt ? { orcpt: utf8OfXtextBytes(r.dsn.orcpt) } : {}),
    });
  }
  return out;
}

/** The requests of these recipients (one job's), or undefined when none made one. */
export function requestsOf(requests: ReadonlyMap<string, RecipientDsn>, recipients: readonly string[]): Record<string, RecipientDsn> | undefined {
  if (requests.size === 0) return undefined;
  const picked = recipients.flatMap((r) => (requests.has(r) ? [[r, requests.get(r)!] as const] : []));
  return picked.length > 0 ? Object.fromEntries(picked) : undefined;
}

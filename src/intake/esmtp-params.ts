// Which MAIL FROM and RCPT TO parameters intake accepts, as pure checks: the extensions it
// offers and no others (RFC 5321 4.1.1.11: an unrecognised parameter gets 555), and a non-ASCII
// address only with SMTPUTF8 (RFC 6531 3.5).

/** Parameters of the extensions intake offers: SIZE, 8BITMIME, SMTPUTF8, DSN, and AUTH's on listeners with auth. */
const MAIL_PARAMS = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID']);
const RCPT_PARAMS = new Set(['NOTIFY', 'ORCPT']);
const NON_ASCII = /[^\x00-\x7f]/;

interface Refusal {
  code: number;
  text: string;
}

function unknown(args: Record<string, unknown> | false, allowed: ReadonlySet<string>, command: string): Refusal | undefined {
  const extra = Object.keys(args || {}).filter((k) => !allowed.has(k));
  if (extra.length === 0) return undefined;
  return { code: 555, text: `5.5.4 ${command} parameter${extra.length > 1 ? 's' : ''} ${extra.join(', ')} not recognised` };
}

function needsUtf8(address: string, smtpUtf8: boolean, what: string): Refusal | undefined {
  if (smtpUtf8 || !NON_ASCII.test(address)) return undefined;
  return { code: 553, text: `5.6.7 ${what} address with non-ASCII characters needs SMTPUTF8 (RFC 6531)` };
}

/** Why MAIL FROM is refused, or undefined. `auth`: the listener offers AUTH, whose AUTH= parameter is then known. */
export function mailRefusal(address: string, args: Record<string, unknown> | false, smtpUtf8: boolean, auth: boolean): Refusal | undefined {
  return unknown(args, auth ? new Set([...MAIL_PARAMS, 'AUTH']) : MAIL_PARAMS, 'MAIL FROM') ?? needsUtf8(address, smtpUtf8, 'Sender');
}

/** Why RCPT TO is refused, or undefined. */
export function rcptRefusal(address: string, args: Record<string, unknown> | false, smtpUtf8: boolean): Refusal | undefined {
  return unknown(args, RCPT_PARAMS, 'RCPT TO') ?? needsUtf8(address, smtpUtf8, 'Recipient');
}

// Delivery status notifications (RFC 3464, 6533), built from their input alone: a human part, the status fields, the returned original.
import { headerSection } from '../core/headers.js';
import { type Reply, formatReply } from '../core/reply.js';
import { utf8AddrXtext, utf8AddressOf } from '../core/xtext.js';

export type DsnAction = 'failed' | 'delayed' | 'relayed';

export interface DsnRecipient {
  /** The address the message was for (RCPT TO as received). */
  recipient: string;
  action: DsnAction;
  /** The reply behind the action: its enhanced code is the Status; its text the Diagnostic-Code. Internal replies have text starting with '[internal]'. */
  reply: Reply;
  /** The MX host name that gave the reply, when a remote server did. */
  remoteMta?: string | undefined;
  /** ORCPT as received, already xtext-decoded, e.g. 'rfc822;bob@example.com'. */
  originalRecipient?: string | undefined;
  /** For 'delayed': when the message will be given up (its expiry, epoch ms). */
  willRetryUntil?: number | undefined;
}

export interface DsnInput {
  /** Our host name. */
  reportingMta: string;
  /** The envelope sender the DSN goes to. */
  originalSender: string;
  queueId: string;
  /** Epoch ms. */
  arrival: number;
  /** Epoch ms. */
  now: number;
  /** ENVID of the original message, xtext-decoded. */
  envid?: string | undefined;
  /** What of the original to return: HDRS (headers only) or FULL (the whole message). */
  ret: 'HDRS' | 'FULL';
  /** FULL returns the whole message only up to this many bytes; a larger one returns its headers (and the human part says so). */
  maxReturnSize: number;
  /** The original was SMTPUTF8 mail: use message/global-delivery-status, message/global, message/global-headers (RFC 6533). */
  utf8: boolean;
  /** Absent: no returned-content part. */
  originalMessage?: Buffer | undefined;
  /** At least one; may mix actions. */
  recipients: DsnRecipient[];
}

export interface Dsn {
  body: Buffer;
  /** The DSN has bytes above 127 (it must be sent with BODY=8BITMIME). */
  eightBit: boolean;
  /** It carries UTF-8 addresses or a message/global* part (it must be sent with SMTPUTF8 where addresses need it). */
  utf8: boolean;
}

const CRLF = '\r\n';

/**
 * RFC 5322 §2.1.1: no line over 998 octets. Lines the builder writes are cut there rather than
 * folded, so each field stays one line that line-based DSN readers take whole: SMTP reply lines
 * are at most 512 octets (RFC 5321 §4.5.3.1.5), so only flattened multi-line replies or absurd
 * addresses get this long, and their tail is rarely worth a continuation line.
 */
const MAX_LINE = 998;

/** Worst first: the subject names the worst action present, and the human part follows this order. */
const ACTIONS: readonly DsnAction[] = ['failed', 'delayed', 'relayed'];

const SUBJECTS: Record<DsnAction, string> = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  relayed: 'Successful Mail Delivery Report',
};

/** The class of the Status when the reply carries no usable enhanced code (RFC 3461 §6.3 (g)). */
const GENERIC_STATUS: Record<DsnAction, string> = { failed: '5.0.0', delayed: '4.0.0', relayed: '2.0.0' };

/** RFC 3464 §2.3.4: class 2, 4 or 5; sub-fields of one to three digits without leading zeros. */
const STATUS_CODE = /^[245]\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})$/;

/** RFC 5322 date-time with the numeric zone RFC 3464 §2.2.5 and §2.3.7 require. */
function rfc5322Date(ms: number): string {
  return new Date(ms).toUTCString().replace(/GMT$/, '+0000');
}

/**
 * One line of text for a field or the human part: a remote reply must not break the report's
 * syntax. An ASCII DSN keeps printable ASCII only; a UTF-8 one keeps UTF-8 but no controls.
 */
function oneLine(text: string, utf8: boolean): string {
  const flat = text.replace(/[\r\n]+/g, ' ');
  return utf8 ? flat.replace(/[\x00-\x1f\x7f-\x9f]/g, '?') : flat.replace(/[^\x20-\x7e]/g, '?');
}

/** The line cut to MAX_LINE octets at a character boundary, the cut marked. */
function cap(line: string): string {
  if (Buffer.byteLength(line) <= MAX_LINE) return line;
  let kept = '';
  let size = 0;
  for (const ch of line) {
    size += Buffer.byteLength(ch);
    if (size > MAX_LINE - 3) break;
    kept += ch;
  }
  return `${kept}...`;
}

/** Single lines, each ended by CRLF. */
function lines(list: readonly string[]): Buffer {
  return Buffer.from(list.map((l) => cap(l) + CRLF).join(''), 'utf8');
}

function has8bit(bytes: Buffer): boolean {
  for (const b of bytes) if (b > 127) return true;
  return false;
}

const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

/**
 * An address with its type, for Original- and Final-Recipient. A non-ASCII address takes the
 * utf-8 type (RFC 6533 §3): written natively in a UTF-8 DSN (§3 and §4.1 SHOULD), as
 * utf-8-addr-xtext in an ASCII one (§3 MUST: that part is 7-bit).
 */
function typedAddress(type: string, address: string, utf8: boolean): string {
  let native: string | undefined = address;
  if (type.toLowerCase() === 'utf-8') {
    native = utf8AddressOf(address);
    // §3: a utf-8 address that does not decode is copied without alteration.
    if (native === undefined) return `${type}; ${address}`;
  } else if (isAscii(address)) {
    return `${type}; ${address}`;
  }
  return `utf-8; ${utf8 ? native : utf8AddrXtext(native)}`;
}

/**
 * ORCPT as the Original-Recipient field. Its value is the decoded parameter, not xtext: RFC 3461
 * §4.2 restricts the value "prior to encoding as xtext" because of "limitations in the DSN
 * format", i.e. the DSN carries that value; Postfix writes it the same way.
 */
function originalRecipient(orcpt: string, utf8: boolean): string {
  const semi = orcpt.indexOf(';');
  // RFC 3464 §2.3.1: "unknown" when the type cannot be determined.
  const type = semi < 0 ? 'unknown' : orcpt.slice(0, semi).trim() || 'unknown';
  return typedAddress(type, semi < 0 ? orcpt : orcpt.slice(semi + 1), utf8);
}

/** The reply as the smtp diagnostic-type transcribes it (RFC 3461 §9.2). */
function diagnostic(r: Reply): string {
  return formatReply(r).trimEnd();
}

/** The returned part: what of the original goes back, and how the human part names it. */
interface Returned {
  type: string;
  content: Buffer;
  note: string;
}

function returnedContent(input: DsnInput): Returned | undefined {
  const original = input.originalMessage;
  if (!original) return undefined;
  // RFC 3461 §4.3 and §6.2: RET only governs DSNs that report a failure; any other returns headers.
  const wantsFull = input.ret === 'FULL' && input.recipients.some((r) => r.action === 'failed');
  if (wantsFull && original.length <= input.maxReturnSize) {
    return { type: input.utf8 ? 'message/global' : 'message/rfc822', content: original, note: 'A copy of your message is attached.' };
  }
  return {
    type: input.utf8 ? 'message/global-headers' : 'text/rfc822-headers',
    // Byte for byte: a Buffer slice, never a string, so 8-bit and UTF-8 header bytes survive.
    content: headerSection(original),
    note: wantsFull
      ? `Your message is larger than ${input.maxReturnSize} bytes, so only its headers are attached.`
      : 'The headers of your message are attached.',
  };
}

/**
 * The boundary comes from the queue id and the time, not from randomness, so the builder stays
 * pure and a DSN rebuilt for the same attempt is byte-identical. The only content not written
 * here is the returned original: the boundary grows until that does not contain it.
 */
function boundaryFor(input: DsnInput, returned: Buffer | undefined): string {
  const base = `=_impulse_${input.queueId.replace(/[^A-Za-z0-9]/g, '').slice(0, 32)}_${input.now}`;
  for (let n = 0; ; n++) {
    const boundary = n === 0 ? base : `${base}_${n}`;
    if (returned === undefined || returned.indexOf(`--${boundary}`) < 0) return boundary;
  }
}

function intro(action: DsnAction, until: number | undefined, eachUntil: boolean): string[] {
  switch (action) {
    case 'failed':
      return ['Your message could not be delivered to the recipients below.', 'The mail system has given up on them; the reasons follow.'];
    case 'delayed':
      return [
        'Your message has not been delivered yet to the recipients below.',
        'This is a warning only; you do not need to send it again.',
        until !== undefined ? `The mail system will keep trying until ${rfc5322Date(until)}, and will give up then.`
          : eachUntil ? 'The mail system will keep trying each until the time shown, and will give up then.'
            : 'The mail system will keep trying.',
      ];
    case 'relayed':
      return ['Your message was relayed to the recipients below, to a system that does', 'not report delivery: no further notice about them will come.'];
  }
}

function humanText(input: DsnInput, mta: string, returned: Returned | undefined): string[] {
  const out = [`This is the mail system at ${mta}.`];
  for (const action of ACTIONS) {
    const group = input.recipients.filter((r) => r.action === action);
    if (group.length === 0) continue;
    const untils = [...new Set(group.flatMap((r) => (r.action === 'delayed' && r.willRetryUntil !== undefined ? [r.willRetryUntil] : [])))];
    // Recipients of one message share its expiry; should they differ, each line names its own.
    const eachUntil = untils.length > 1;
    out.push('', ...intro(action, untils.length === 1 ? untils[0] : undefined, eachUntil), '');
    for (const r of group) {
      const own = eachUntil && r.willRetryUntil !== undefined ? ` (until ${rfc5322Date(r.willRetryUntil)})` : '';
      // An ASCII DSN shows a UTF-8 address as the status part does, rather than as question marks.
      const who = input.utf8 || isAscii(r.recipient) ? r.recipient : utf8AddrXtext(r.recipient);
      out.push(oneLine(`<${who}>: ${diagnostic(r.reply)}`, input.utf8) + own);
    }
  }
  if (returned) out.push('', returned.note);
  return out;
}

/** The delivery-status fields, in the order of the ABNF of RFC 3464 §2.2 and §2.3. */
function statusFields(input: DsnInput, mta: string): string[] {
  const { utf8 } = input;
  const field = (name: string, value: string): string => `${name}: ${oneLine(value, utf8)}`;
  const out = [
    // RFC 3461 §6.3 (a): the ENVID as decoded; the field is "NOT encoded as xtext".
    ...(input.envid ? [field('Original-Envelope-Id', input.envid)] : []),
    field('Reporting-MTA', `dns; ${mta}`),
    field('Arrival-Date', rfc5322Date(input.arrival)),
    field('X-Impulse-Queue-ID', input.queueId),
  ];
  for (const r of input.recipients) {
    out.push(
      '',
      ...(r.originalRecipient ? [field('Original-Recipient', originalRecipient(r.originalRecipient, utf8))] : []),
      field('Final-Recipient', typedAddress('rfc822', r.recipient, utf8)),
      field('Action', r.action),
      field('Status', STATUS_CODE.test(r.reply.enhanced) ? r.reply.enhanced : GENERIC_STATUS[r.action]),
      // RFC 3464 §2.3.5: only when a remote MTA was involved; its absence says we issued the diagnostic.
      ...(r.remoteMta ? [field('Remote-MTA', `dns; ${r.remoteMta}`)] : []),
      field('Diagnostic-Code', `smtp; ${diagnostic(r.reply)}`),
      field('Last-Attempt-Date', rfc5322Date(input.now)),
      // RFC 3464 §2.3.9: Will-Retry-Until "MUST NOT appear" but for delayed recipients.
      ...(r.action === 'delayed' && r.willRetryUntil !== undefined ? [field('Will-Retry-Until', rfc5322Date(r.willRetryUntil))] : []),
    );
  }
  return out;
}

/** RFC 2045 §6.2: content with bytes above 127 is labelled 8bit; 7bit, the default, goes unsaid. */
function encoding(content: Buffer): string[] {
  return has8bit(content) ? ['Content-Transfer-Encoding: 8bit'] : [];
}

/** One body part after its delimiter line; the CRLF before the next delimiter belongs to that delimiter (RFC 2046 §5.1.1). */
function part(boundary: string, fields: readonly string[], content: Buffer): Buffer {
  return Buffer.concat([lines([`--${boundary}`, ...fields, '']), content, Buffer.from(CRLF)]);
}

export function buildDsn(input: DsnInput): Dsn {
  if (input.recipients.length === 0) throw new RangeError('a DSN reports on at least one recipient');
  const { utf8 } = input;
  const mta = oneLine(input.reportingMta, false);
  const returned = returnedContent(input);
  const boundary = boundaryFor(input, returned?.content);

  const human = lines(humanText(input, mta, returned));
  const status = lines(statusFields(input, mta));
  const body = Buffer.concat([
    Buffer.from(`This is a MIME-encapsulated message.${CRLF}${CRLF}`),
    part(boundary, [`Content-Type: text/plain; charset=${utf8 ? 'utf-8' : 'us-ascii'}`, ...encoding(human)], human),
    // RFC 6533 §6.4: message/global-delivery-status is sent 8bit; RFC 3464 §2.1: the ASCII one 7bit.
    part(boundary, utf8 ? ['Content-Type: message/global-delivery-status', 'Content-Transfer-Encoding: 8bit'] : ['Content-Type: message/delivery-status'], status),
    // RFC 6533 §6.3: message/global-headers takes no charset parameter; neither type needs one.
    ...(returned ? [part(boundary, [`Content-Type: ${returned.type}`, ...encoding(returned.content)], returned.content)] : []),
    Buffer.from(`--${boundary}--${CRLF}`),
  ]);

  const worst = ACTIONS.find((a) => input.recipients.some((r) => r.action === a))!;
  const header = lines([
    `From: Mail Delivery System <MAILER-DAEMON@${mta}>`,
    // The sender may be a UTF-8 address: kept as it is (the result's utf8 then says so), one line.
    `To: <${oneLine(input.originalSender, true)}>`,
    `Subject: ${SUBJECTS[worst]}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${oneLine(input.queueId, false)}.${input.now}@${mta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    // RFC 2045 §6.4: a multipart holding an 8bit part is itself 8bit.
    ...encoding(body),
    '',
  ]);
  return {
    body: Buffer.concat([header, body]),
    eightBit: has8bit(header) || has8bit(body),
    utf8: utf8 || has8bit(header),
  };
}

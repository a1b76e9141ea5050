// RFC 3464 delivery status notifications: multipart/report with a human part, the
// machine-readable message/delivery-status part, and the original headers (RFC 6522).
import { randomBytes } from 'node:crypto';
import { headerSection } from '../core/headers.js';
import { type Reply, formatReply } from '../core/reply.js';

interface FailedRecipient {
  recipient: string;
  reply: Reply;
  remoteMta?: string | undefined;
}

interface DsnInput {
  reportingMta: string;
  originalSender: string;
  queueId: string;
  arrival: number;
  originalMessage: Buffer | undefined;
  failures: FailedRecipient[];
  now: number;
}

function rfc5322Date(ms: number): string {
  return new Date(ms).toUTCString().replace(/GMT$/, '+0000');
}

/** A single-line diagnostic: reply text from the remote side must not break the report's syntax. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?');
}

export function buildDsn(input: DsnInput): Buffer {
  const boundary = `impulse-report-${randomBytes(8).toString('hex')}`;
  const who = input.failures.map((f) => `<${f.recipient}>: ${oneLine(formatReply(f.reply))}`).join('\r\n');
  const perRecipient = input.failures.map((f) => [
    `Final-Recipient: rfc822; ${f.recipient}`,
    'Action: failed',
    `Status: ${f.reply.enhanced}`,
    ...(f.remoteMta ? [`Remote-MTA: dns; ${f.remoteMta}`] : []),
    `Diagnostic-Code: smtp; ${oneLine(formatReply(f.reply))}`,
    `Last-Attempt-Date: ${rfc5322Date(input.now)}`,
  ].join('\r\n')).join('\r\n\r\n');

  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${input.reportingMta}>`,
    `To: <${input.originalSender}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${input.queueId}.${input.now}@${input.reportingMta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `This is the mail system at ${input.reportingMta}.`,
    '',
    'Your message could not be delivered to one or more recipients.',
    'It has been failed permanently; the reasons follow.',
    '',
    who,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${input.reportingMta}`,
    `X-Impulse-Queue-ID: ${input.queueId}`,
    `Arrival-Date: ${rfc5322Date(input.arrival)}`,
    '',
    perRecipient,
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    input.originalMessage ? headerSection(input.originalMessage) : '',
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

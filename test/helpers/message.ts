// Builds well-formed RFC 5322 messages so intake tests vary only what they mean to vary.
import { randomUUID } from 'node:crypto';

export type MakeMessageOptions = {
  from: string;
  to: string[];
  subject?: string;
  body?: string;
  messageId?: string;
  headers?: Record<string, string>;
  /** Pads the body with filler lines so the whole message is this many bytes (within one byte). */
  size?: number;
};

const FILLER_LINE = 76;

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

export function makeMessage(opts: MakeMessageOptions): string {
  const headers: Record<string, string> = {
    From: opts.from,
    To: opts.to.join(', '),
    Subject: opts.subject ?? 'Impulse test message',
    Date: rfc5322Date(new Date()),
    'Message-ID': opts.messageId ?? `<${randomUUID()}@impulse.test>`,
    'MIME-Version': '1.0',
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Transfer-Encoding': '8bit',
    ...opts.headers,
  };
  let body = (opts.body ?? 'Hello from the Impulse test suite.').replace(/\r?\n/g, '\r\n');
  if (!body.endsWith('\r\n')) body += '\r\n';
  let message = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n' + body;

  if (opts.size !== undefined) {
    let remaining = opts.size - Buffer.byteLength(message);
    const lines: string[] = [];
    while (remaining > FILLER_LINE + 2 + 1) {
      lines.push('x'.repeat(FILLER_LINE));
      remaining -= FILLER_LINE + 2;
    }
    if (remaining >= 2) lines.push('x'.repeat(remaining - 2));
    message += lines.map((l) => l + '\r\n').join('');
  }
  return message;
}

// The messages of the relay test, reproducible from a seed: plain, 8-bit and base64-attachment bodies, lines starting with a dot, UTF-8 mailboxes, DSN parameters.
import { Prng } from '../helpers/prng.js';
import type { Outgoing } from './inject.js';

export type CorpusMessage = Outgoing & {
  index: number;
  messageId: string;
  kind: 'plain' | '8bit' | 'attachment';
  utf8: boolean;
  dsn: boolean;
  recipients: string[];
};

const EIGHT_BIT_LINES = [
  'Grüße aus Köln, façade, naïve, smörgåsbord.',
  'Ελληνικά κείμενα και Кириллица в одном письме.',
  '日本語のテキストも一行。',
  'Zażółć gęślą jaźń — “quotes” and ‘more’ and … ellipsis.',
];

// Lines a careless dot-stuffer breaks: a lone dot, two dots, a dot before text or a tab.
const DOT_LINES = ['.', '..', '.hidden line', '..two dots', '. leading space', '.\tand a tab', '...'];

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

function base64Lines(bytes: Buffer): string[] {
  const text = bytes.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += 76) lines.push(text.slice(i, i + 76));
  return lines;
}

function textLines(prng: Prng, eightBit: boolean): string[] {
  const lines: string[] = [];
  const count = prng.between(3, 30);
  for (let i = 0; i < count; i++) {
    if (prng.chance(0.25)) lines.push(prng.pick(DOT_LINES));
    else if (eightBit && prng.chance(0.5)) lines.push(prng.pick(EIGHT_BIT_LINES));
    else if (prng.chance(0.1)) lines.push('');
    else lines.push(`Line ${i} of the body, ${'lorem ipsum '.repeat(prng.between(0, 5))}`.trimEnd());
  }
  // Every message has at least one of each dot case that matters most.
  lines.push('.', '.dot at the start');
  return lines;
}

function randomBytes(prng: Prng, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) out.writeUInt32LE(prng.uint32(), Math.min(i, n - 4));
  return out;
}

export function buildCorpus(opts: { count: number; seed: string; domains: string[]; senderDomain: string }): CorpusMessage[] {
  const root = new Prng(opts.seed);
  const out: CorpusMessage[] = [];
  for (let index = 0; index < opts.count; index++) {
    const prng = root.fork(index);
    const kind = prng.weighted([[4, 'plain'], [3, '8bit'], [3, 'attachment']] as const);
    const utf8 = index % 7 === 3;
    const dsn = index % 4 === 1;
    const from = utf8 && prng.chance(0.5) ? `rené.${index}@${opts.senderDomain}` : `sender.${index}@${opts.senderDomain}`;
    const count = prng.between(1, 4);
    const recipients: string[] = [];
    for (let k = 0; k < count; k++) {
      const domain = opts.domains[(index + k) % opts.domains.length]!;
      const local = utf8 && k === 0 ? `jörg.${index}.${k}` : `user.${index}.${k}`;
      recipients.push(`${local}@${domain}`);
    }
    const messageId = `<relay.${index}.${opts.seed}@upstream.test>`;
    const headers = [
      `From: ${from}`,
      `To: ${recipients.join(', ')}`,
      `Subject: ${utf8 ? `Grüße, message ${index}` : `message ${index}`}`,
      `Date: ${rfc5322Date(new Date(Date.UTC(2025, 0, 1, 0, 0, index)))}`,
      `Message-ID: ${messageId}`,
      'MIME-Version: 1.0',
    ];
    let body: string[];
    if (kind === 'attachment') {
      const boundary = `=_boundary_${index}_${prng.uint32().toString(16)}`;
      headers.push(`Content-Type: multipart/mixed; boundary="${boundary}"`);
      body = [
        'This is a multi-part message in MIME format.',
        `--${boundary}`,
        'Content-Type: text/plain; charset=us-ascii',
        'Content-Transfer-Encoding: 7bit',
        '',
        ...textLines(prng, false),
        `--${boundary}`,
        `Content-Type: application/octet-stream; name="data-${index}.bin"`,
        'Content-Transfer-Encoding: base64',
        `Content-Disposition: attachment; filename="data-${index}.bin"`,
        '',
        ...base64Lines(randomBytes(prng, prng.between(512, 24 * 1024))),
        `--${boundary}--`,
      ];
    } else {
      const eightBit = kind === '8bit';
      headers.push(`Content-Type: text/plain; charset=${eightBit ? 'utf-8' : 'us-ascii'}`, `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`);
      body = textLines(prng, eightBit);
    }
    const raw = Buffer.from(`${[...headers, '', ...body].join('\r\n')}\r\n`, 'utf8');
    const mailParams = [
      kind === '8bit' ? 'BODY=8BITMIME' : kind === 'attachment' && prng.chance(0.5) ? 'BODY=7BIT' : '',
      utf8 ? 'SMTPUTF8' : '',
      dsn ? `RET=${index % 8 === 1 ? 'FULL' : 'HDRS'} ENVID=relay-${index}` : '',
    ].filter(Boolean).join(' ');
    const to = recipients.map((address) => {
      if (!dsn) return { address };
      const ascii = /^[\x00-\x7f]*$/.test(address);
      return { address, params: `NOTIFY=SUCCESS,FAILURE,DELAY${ascii ? ` ORCPT=rfc822;${address}` : ''}` };
    });
    out.push({ index, messageId, kind, utf8, dsn, recipients, from, to, raw, ...(mailParams ? { mailParams } : {}) });
  }
  return out;
}

// Hands messages to an SMTP server as an upstream client would, with ESMTP parameters of its choosing on each MAIL and RCPT (DSN, BODY, SMTPUTF8), over a few persistent sessions.
//
// Built on the repository's RawSmtp: one command, one reply, no pipelining; commands go out as
// UTF-8 so SMTPUTF8 addresses are sent as they are; the content is dot-stuffed here.
import { RawSmtp } from '../helpers/raw-smtp.js';

export type Rcpt = { address: string; params?: string };

export type Outgoing = {
  from: string;
  /** After the address on MAIL FROM, e.g. `BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x`. */
  mailParams?: string;
  to: Rcpt[];
  /** The message, CRLF line ends, ending with CRLF. */
  raw: Buffer;
};

/** RFC 5321 4.5.2: a line starting with '.' gets one more; then the terminating '.' line. */
export function dotStuff(raw: Buffer): Buffer {
  const text = raw.toString('latin1').replace(/^\./gm, '..');
  return Buffer.from(`${text}.\r\n`, 'latin1');
}

async function command(c: RawSmtp, line: string, want: RegExp): Promise<string> {
  c.write(Buffer.from(`${line}\r\n`, 'utf8'));
  const reply = await c.reply();
  if (!want.test(reply)) throw new Error(`${line} -> ${reply}`);
  return reply;
}

/** One transaction; resolves with the reply to the final '.'. */
async function sendOne(c: RawSmtp, m: Outgoing): Promise<string> {
  await command(c, `MAIL FROM:<${m.from}>${m.mailParams ? ` ${m.mailParams}` : ''}`, /^250 /);
  for (const r of m.to) await command(c, `RCPT TO:<${r.address}>${r.params ? ` ${r.params}` : ''}`, /^25[01] /);
  await command(c, 'DATA', /^354 /);
  c.write(dotStuff(m.raw));
  const reply = await c.reply();
  if (!/^250 /.test(reply)) throw new Error(`end of DATA -> ${reply}`);
  return reply;
}

async function openSession(host: string, port: number, helo = 'client.upstream.test'): Promise<RawSmtp> {
  const c = await RawSmtp.connect({ host, port, timeoutMs: 30000 });
  if (!c.greeting.startsWith('220')) throw new Error(`greeting: ${c.greeting}`);
  await command(c, `EHLO ${helo}`, /^250[- ]/);
  return c;
}

/** Every message over `sessions` parallel sessions; the replies to each final '.', in input order. */
export async function injectAll(opts: { host: string; port: number; messages: Outgoing[]; sessions?: number }): Promise<string[]> {
  const replies: string[] = new Array(opts.messages.length);
  let next = 0;
  const worker = async () => {
    const c = await openSession(opts.host, opts.port);
    try {
      for (let i = next++; i < opts.messages.length; i = next++) {
        try {
          replies[i] = await sendOne(c, opts.messages[i]!);
        } catch (err) {
          throw new Error(`message ${i} (from ${opts.messages[i]!.from}): ${(err as Error).message}`);
        }
      }
      await command(c, 'QUIT', /^221 /);
    } finally {
      c.close();
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.sessions ?? 4, opts.messages.length) }, worker));
  return replies;
}

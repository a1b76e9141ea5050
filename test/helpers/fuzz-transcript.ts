// What the server made of a generated session, as the client can tell: plays a plan against a
// server and reads the bytes written and the replies received side by side, the way smtp-server
// parses them (command lines end at LF, a 354 switches to message data ending at CRLF.CRLF, every
// command line gets exactly one reply), so it knows which envelope and which bytes each
// "250 … queued as" acknowledged, however mangled the session was.
import { connect } from 'node:net';
import { CR, DOT, type FuzzContext, LF, TERMINATOR } from './fuzz-segments.js';
import type { SessionPlan } from './fuzz-sessions.js';
import { LineSplitter } from './lines.js';
import { Condition } from './wait.js';

export type Reply = { code: number; lines: string[] };

/** One message the server took DATA for. reply is missing when the client never saw it. */
export type Transaction = { sender: string; recipients: string[]; content: Buffer; reply?: Reply };

export type SessionResult = {
  plan: SessionPlan;
  sent: Buffer;
  replies: Reply[];
  transactions: Transaction[];
  /** Reply lines that are not `ddd-text` or `ddd text`, continuation lines with another code. */
  malformed: string[];
  /** Lines the server never answered while the connection stayed open. */
  stalls: string[];
  /**
   * Every complete line and message was answered, so the transactions are all the server took.
   * Otherwise (the client left without waiting) the server may have taken more.
   */
  known: boolean;
};


/** The address of a MAIL or RCPT line as smtp-server takes it (source route dropped). */
function addressOf(line: Buffer): string {
  const parts = line.toString().split(':');
  parts.shift();
  const token = parts.join(':').trim().split(/\s+/)[0] ?? '';
  return token.slice(1, -1).replace(/^@[^\s,:@]+(?:,@[^\s,:@]+)*:/, '');
}

/**
 * Removes the stuffing dots as smtp-server does: a message starting with ".." loses its first
 * dot, and so does every "..", from the third byte on, that follows an LF (bare or not).
 */
function unstuff(payload: Buffer): Buffer {
  const out: number[] = [];
  const start = payload.length >= 2 && payload[0] === DOT && payload[1] === DOT ? 1 : 0;
  for (let i = start; i < payload.length; i++) {
    if (i >= 2 && payload[i] === DOT && payload[i - 1] === LF && payload[i + 1] === DOT) continue;
    out.push(payload[i]!);
  }
  return Buffer.from(out);
}

class Transcript {
  constructor(private readonly maxCommandLength: number) {}

  sent = Buffer.alloc(0);
  readonly replies: Reply[] = [];
  readonly transactions: Transaction[] = [];
  /** The server will answer nothing more (greeting refused, 421, 221). */
  over = false;
  /** A complete command line or message has no reply yet. */
  waiting = false;
  private pos = 0;
  private next = 0;
  private greeted = false;
  private inData = false;
  private sender: string | undefined;
  private readonly recipients = new Map<string, string>();

  wrote(bytes: Buffer): void {
    this.sent = Buffer.concat([this.sent, bytes]);
    this.advance();
  }

  replied(reply: Reply): void {
    this.replies.push(reply);
    this.advance();
  }

  /** What is still unanswered once the connection is gone, as a description for diagnostics. */
  unanswered(): string {
    return JSON.stringify(this.sent.subarray(this.pos, this.pos + 200).toString('latin1'));
  }

  /** Records a message whose end was sent but whose reply never came. */
  finish(): void {
    if (!this.inData || this.over) return;
    const end = this.dataEnd();
    if (end) this.transactions.push(this.transaction(end.content));
  }

  private reply(): Reply | undefined {
    return this.next < this.replies.length ? this.replies[this.next++] : undefined;
  }

  private reset(): void {
    this.sender = undefined;
    this.recipients.clear();
  }

  private transaction(content: Buffer): Transaction {
    return { sender: this.sender ?? '', recipients: [...this.recipients.values()], content: unstuff(content) };
  }

  private dataEnd(): { content: Buffer; after: number } | undefined {
    if (this.sent.subarray(this.pos, this.pos + 3).equals(Buffer.from('.\r\n'))) return { content: Buffer.alloc(0), after: this.pos + 3 };
    const at = this.sent.indexOf(TERMINATOR, this.pos);
    return at < 0 ? undefined : { content: this.sent.subarray(this.pos, at + 2), after: at + 5 };
  }

  private advance(): void {
    this.waiting = false;
    if (!this.greeted) {
      const greeting = this.reply();
      if (!greeting) return;
      this.greeted = true;
      // "421 You talk too soon" and refusals answer in place of the greeting, then close.
      if (greeting.code !== 220) this.over = true;
    }
    while (!this.over) {
      if (this.inData) {
        const end = this.dataEnd();
        if (!end) return;
        const reply = this.reply();
        if (!reply) {
          this.waiting = true;
          return;
        }
        this.transactions.push({ ...this.transaction(end.content), reply });
        this.reset();
        this.inData = false;
        this.pos = end.after;
        if (reply.code === 421) this.over = true;
        continue;
      }
      const eol = this.sent.indexOf(LF, this.pos);
      const lineEnd = eol < 0 ? this.sent.length : eol > this.pos && this.sent[eol - 1] === CR ? eol - 1 : eol;
      // smtp-server refuses an over-long line as soon as it has that much, newline or not.
      const tooLong = lineEnd - this.pos > this.maxCommandLength;
      if (eol < 0 && !tooLong) return;
      const reply = this.reply();
      if (!reply) {
        this.waiting = true;
        return;
      }
      const line = this.sent.subarray(this.pos, lineEnd);
      this.pos = eol < 0 ? this.sent.length : eol + 1;
      if (tooLong || reply.code === 421 || reply.code === 221) {
        this.over = true;
        return;
      }
      this.apply(line, reply);
    }
  }

  private apply(line: Buffer, reply: Reply): void {
    const verb = line.toString().split(' ')[0]!.toUpperCase();
    if (reply.code === 354) {
      this.inData = true;
      return;
    }
    if (reply.code !== 250) return;
    if (verb === 'MAIL') {
      this.reset();
      this.sender = addressOf(line);
    } else if (verb === 'RCPT') {
      const address = addressOf(line);
      this.recipients.set(address.toLowerCase(), address);
    } else if (verb === 'EHLO' || verb === 'HELO' || verb === 'RSET') {
      this.reset();
    }
  }
}

// Running a plan against a server

const REPLY_LINE = /^(\d{3})([ -])/;

/** Plays one session; never rejects: what went wrong is in the result. */
export async function runSession(
  plan: SessionPlan, ctx: FuzzContext, target: { host: string; port: number }, stallMs: number,
): Promise<SessionResult> {
  const model = new Transcript(ctx.maxCommandLength);
  const changed = new Condition();
  const malformed: string[] = [];
  const stalls: string[] = [];
  let closed = false;
  let pending: string[] = [];
  const lines = new LineSplitter();

  const socket = connect({ host: target.host, port: target.port });
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    for (const line of lines.push(chunk)) {
      const m = REPLY_LINE.exec(line);
      if (!m || /[\r\n]/.test(line) || (pending.length > 0 && !pending[0]!.startsWith(m[1]!))) {
        malformed.push(line);
        continue;
      }
      pending.push(line);
      if (m[2] === ' ') {
        model.replied({ code: Number(m[1]), lines: pending });
        pending = [];
      }
    }
    changed.notify();
  });
  const gone = new Promise<void>((resolve) => {
    socket.once('close', () => {
      closed = true;
      // Whatever is left was cut off by the server closing: not a complete reply.
      if (lines.rest !== '' && plan.end !== 'drop') malformed.push(`${lines.rest} (no CRLF before the server closed)`);
      changed.notify();
      resolve();
    });
  });
  // Resets and broken pipes are how a server that closed looks to a client still writing.
  socket.on('error', () => undefined);

  const settled = (what: string) =>
    changed.until(() => (closed || model.over || !model.waiting ? true : undefined), stallMs, () => what).catch(() => {
      stalls.push(`${what}; unanswered from ${model.unanswered()}`);
    });

  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', resolve);
  });
  if (plan.opening === 'drop') {
    socket.destroy();
  } else {
    if (plan.opening === 'early' && plan.writes[0]) {
      socket.write(plan.writes[0]);
      model.wrote(plan.writes[0]);
    }
    await changed.until(() => (closed || model.replies.length > 0 ? true : undefined), stallMs, () => 'greeting').catch(() => {
      stalls.push('no greeting');
    });
    for (const [k, w] of plan.writes.entries()) {
      if (plan.opening === 'early' && k === 0) continue;
      if (closed || model.over || stalls.length > 0) break;
      socket.write(w);
      model.wrote(w);
      if (k < plan.writes.length - 1 || plan.end === 'close') await settled(`write ${k}`);
    }
    if (plan.end === 'drop') socket.destroy();
    else socket.end();
  }
  await changed.until(() => (closed ? true : undefined), stallMs, () => 'close').catch(() => {
    stalls.push('the server did not close the connection after the client did');
    socket.destroy();
  });
  await gone;
  const known = !model.waiting;
  model.finish();
  return {
    plan, sent: model.sent, replies: model.replies, transactions: model.transactions, malformed, stalls,
    known: known && model.transactions.every((t) => t.reply),
  };
}

/** A session's bytes and replies, shortened, for assertion messages. */
export function describeSession(s: SessionResult, max = 1500): string {
  const sent = JSON.stringify(s.sent.toString('latin1'));
  const replies = JSON.stringify(s.replies.map((r) => r.lines.join(' | ')));
  const clip = (text: string) => (text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text);
  return `session ${s.plan.index} [${s.plan.label}] opening ${s.plan.opening}, end ${s.plan.end}\n  sent: ${clip(sent)}\n  replies: ${clip(replies)}`;
}

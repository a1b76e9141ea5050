// Random and mutated SMTP client sessions for fuzzing an intake. A session is generated from its
// own seeded stream, so session N of a seed replays alone.
import type { Prng } from './prng.js';
import { MUTATIONS } from './fuzz-mutations.js';
import { CR, CRLF, FUZZ_DOMAINS, type FuzzContext, LF, SENDER_DOMAIN, type Segment, command, dataSegment } from './fuzz-segments.js';

export type SessionPlan = {
  index: number;
  /** 'valid', or the mutations applied, for diagnostics. */
  label: string;
  /** drop: close right after connecting; early: write before the greeting. */
  opening: 'greeting' | 'drop' | 'early';
  /** Each write waits until the server answered everything complete in the previous ones. */
  writes: Buffer[];
  /** close: half-close and read until the server closes; drop: destroy right after the last write. */
  end: 'close' | 'drop';
  /** Message contents (un-stuffed) that must be acknowledged: clean mail in an unmutated session. */
  mustAccept: Buffer[];
};

// Message content

/**
 * A message as the client means it (before dot-stuffing), and whether it is plain: mail any MTA
 * must take (CRLF lines of at most 998 bytes, no NUL, within the size limit; 8-bit is fine).
 */
type Content = { content: Buffer; plain: boolean };

const TEXT = 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?-_=+()[]<>@#$%&*/\'"';
const NO_EOL = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== CR && b !== LF));
const EIGHT_BIT = Buffer.concat([Buffer.from(TEXT, 'latin1'), Buffer.from(Array.from({ length: 128 }, (_, i) => 128 + i))]);

function bodyLine(r: Prng): { line: Buffer; plain: boolean } {
  const kind = r.weighted([
    [30, 'text'], [8, 'empty'], [8, 'eight-bit'], [8, 'dots'], [4, 'binary'], [3, 'long'], [4, 'smtp'], [3, 'space'],
  ] as const);
  switch (kind) {
    case 'text': return { line: Buffer.from(r.text(r.between(1, 78), TEXT), 'latin1'), plain: true };
    case 'empty': return { line: Buffer.alloc(0), plain: true };
    case 'eight-bit': return { line: r.bytes(r.between(1, 120), EIGHT_BIT), plain: true };
    case 'dots': return { line: Buffer.from(r.pick(['.', '..', '...', '. ', '.x', '..dot', '.\t'])), plain: true };
    case 'binary': return { line: r.bytes(r.between(1, 200), NO_EOL), plain: false };
    case 'long': return { line: Buffer.from(r.text(r.between(999, 20000), TEXT), 'latin1'), plain: false };
    case 'smtp': return { line: Buffer.from(r.pick(['QUIT', 'RSET', 'MAIL FROM:<x@y.test>', 'DATA', '250 OK', 'From nobody'])), plain: true };
    case 'space': return { line: Buffer.from(r.pick([' ', '\t', ' trailing ', '  '])), plain: true };
  }
}

function messageContent(r: Prng, index: number, ctx: FuzzContext, sender: string, recipients: string[]): Content {
  const shape = r.weighted([[80, 'normal'], [4, 'empty'], [4, 'headers-only'], [4, 'no-headers'], [5, 'bare-eol'], [3, 'huge']] as const);
  if (shape === 'empty') return { content: Buffer.alloc(0), plain: true };
  const lines: Buffer[] = [];
  let plain = shape !== 'huge';
  if (shape !== 'no-headers') {
    lines.push(Buffer.from(`From: <${sender}>`), Buffer.from(`To: ${recipients.map((a) => `<${a}>`).join(', ')}`));
    lines.push(Buffer.from(`Subject: fuzz ${index} ${r.text(r.between(0, 40), TEXT)}`));
    lines.push(Buffer.from(`Message-ID: <${index}.${r.text(12)}@fuzz.test>`));
    for (let i = r.between(0, 3); i > 0; i--) {
      lines.push(Buffer.from(`X-Fuzz-${r.text(4)}: ${r.text(r.between(0, 60), TEXT)}`));
      if (r.chance(0.3)) lines.push(Buffer.from(`\t${r.text(r.between(1, 40), TEXT)}`));
    }
    if (shape !== 'headers-only') lines.push(Buffer.alloc(0));
  }
  if (shape === 'huge') {
    for (let i = Math.ceil(ctx.maxMessageSize / 1000) + r.between(1, 50); i > 0; i--) lines.push(Buffer.from(r.text(998, TEXT), 'latin1'));
  } else if (shape !== 'headers-only') {
    for (let i = r.between(0, 30); i > 0; i--) {
      const { line, plain: ok } = bodyLine(r);
      plain &&= ok;
      lines.push(line);
    }
  }
  if (shape === 'bare-eol') {
    plain = false;
    for (let i = r.between(1, 3); i > 0; i--) {
      const at = r.below(lines.length);
      const line = lines[at]!;
      const cut = r.below(line.length + 1);
      lines[at] = Buffer.concat([line.subarray(0, cut), Buffer.from(r.pick(['\n', '\r', '\n.', '\r.\r', '\n.\n'])), line.subarray(cut)]);
    }
  }
  const content = Buffer.concat(lines.flatMap((l) => [l, Buffer.from(CRLF)]));
  return { content, plain: plain && content.length <= ctx.maxMessageSize };
}

// Valid sessions

function validSession(r: Prng, index: number, ctx: FuzzContext): { segments: Segment[]; mustAccept: Buffer[] } {
  const segments: Segment[] = [];
  const mustAccept: Buffer[] = [];
  let rcptNo = 0;
  const recipient = () => {
    const domain = r.pick(FUZZ_DOMAINS);
    return `f${index}-${++rcptNo}-${r.text(6)}@${r.chance(0.1) ? domain.toUpperCase() : domain}`;
  };
  segments.push(command(`${r.pick(['EHLO', 'EHLO', 'HELO', 'ehlo'])} client${index}.fuzz.test`));
  for (let t = r.between(1, 4); t > 0; t--) {
    if (r.chance(0.15)) segments.push(command(r.pick(['NOOP', 'RSET', 'VRFY postmaster', 'HELP'])));
    const sender = r.chance(0.1) ? '' : `s${index}-${r.text(6)}@${SENDER_DOMAIN}`;
    const mailVerb = r.pick(['MAIL FROM:', 'mail from:', 'MAIL FROM: ']);
    if (r.chance(0.1)) {
      // A transaction abandoned half-way: its recipients must not get this mail.
      segments.push(command(`${mailVerb}<${sender}>`));
      for (let i = r.between(0, 2); i > 0; i--) segments.push(command(`RCPT TO:<${recipient()}>`));
      segments.push(command('RSET'));
    }
    const recipients = Array.from({ length: r.between(1, ctx.maxRecipients + 1) }, recipient);
    const accepted = recipients.slice(0, ctx.maxRecipients);
    const { content, plain } = messageContent(r, index, ctx, sender, accepted);
    const params: string[] = [];
    if (r.chance(0.3)) params.push(r.pick(['BODY=8BITMIME', 'BODY=7BIT']));
    if (r.chance(0.3) && content.length <= ctx.maxMessageSize) params.push(`SIZE=${content.length}`);
    segments.push(command(`${mailVerb}<${sender}>${params.map((p) => ` ${p}`).join('')}`));
    for (const a of recipients) segments.push(command(r.pick([`RCPT TO:<${a}>`, `rcpt to:<${a}>`, `RCPT TO: <${a}>`])));
    segments.push(command('DATA'), dataSegment(content));
    if (plain) mustAccept.push(content);
  }
  if (r.chance(0.8)) segments.push(command('QUIT'));
  return { segments, mustAccept };
}

// Plans

/** Splits the segments into writes the way a client of this kind would send them. */
function writesOf(r: Prng, segs: Segment[]): Buffer[] {
  const style = r.weighted([[4, 'lockstep'], [4, 'pipelined'], [1, 'at-once'], [2, 'fragments']] as const);
  if (style === 'lockstep') return segs.map((s) => s.bytes);
  const all = Buffer.concat(segs.map((s) => s.bytes));
  if (style === 'at-once') return [all];
  if (style === 'fragments') {
    // Small and odd-sized pieces exercise the parser's handling of lines and dots split across reads.
    const cuts = new Set<number>();
    for (let n = r.between(1, 12); n > 0; n--) cuts.add(r.below(all.length));
    for (let n = r.between(0, 4); n > 0; n--) {
      const at = r.below(all.length);
      for (let k = 1; k <= 3; k++) cuts.add(at + k);
    }
    const points = [...cuts].filter((c) => c > 0 && c < all.length).sort((a, b) => a - b);
    return [0, ...points].map((from, k) => all.subarray(from, points[k] ?? all.length));
  }
  // RFC 2920: a group ends with a command whose reply the client needs before going on.
  const writes: Buffer[] = [];
  let group: Buffer[] = [];
  for (const s of segs) {
    group.push(s.bytes);
    if (s.kind === 'command' && ['EHLO', 'HELO', 'DATA', 'QUIT'].includes(s.verb)) {
      writes.push(Buffer.concat(group));
      group = [];
    }
  }
  if (group.length > 0) writes.push(Buffer.concat(group));
  return writes;
}

export function planSession(r: Prng, index: number, ctx: FuzzContext): SessionPlan {
  const kind = r.weighted([[40, 'valid'], [56, 'mutated'], [2, 'drop'], [2, 'early']] as const);
  const { segments, mustAccept } = validSession(r, index, ctx);
  if (kind === 'drop') return { index, label: 'drop before the greeting', opening: 'drop', writes: [], end: 'drop', mustAccept: [] };
  if (kind === 'early') {
    return { index, label: 'talks before the greeting', opening: 'early', writes: writesOf(r, segments), end: 'close', mustAccept: [] };
  }
  let end: SessionPlan['end'] = r.chance(0.15) ? 'drop' : 'close';
  if (kind === 'valid') return { index, label: 'valid', opening: 'greeting', writes: writesOf(r, segments), end, mustAccept };

  const notes: string[] = [];
  for (let n = r.weighted([[5, 1], [3, 2], [2, 3]] as const); n > 0; ) {
    const note = r.weighted(MUTATIONS)(r, segments, ctx);
    if (note === undefined) continue;
    notes.push(note);
    n--;
  }
  let writes = writesOf(r, segments);
  if (r.chance(0.2)) {
    // Cut the session anywhere, even inside a command or a message, and go away.
    const total = writes.reduce((sum, w) => sum + w.length, 0);
    const at = r.below(total + 1);
    end = 'drop';
    notes.push(`truncate(@${at} of ${total})`);
    writes = cut(writes, at);
  }
  return { index, label: notes.join(' '), opening: 'greeting', writes, end, mustAccept: [] };
}

function cut(writes: Buffer[], at: number): Buffer[] {
  const out: Buffer[] = [];
  let left = at;
  for (const w of writes) {
    if (left <= 0) break;
    out.push(w.subarray(0, left));
    left -= w.length;
  }
  return out;
}

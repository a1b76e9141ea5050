// Random and mutated SMTP client sessions for fuzzing an intake, and what the server made of them.
// A session is generated from its own seeded stream, so session N of a seed replays alone. The
// model of the server reads the bytes written and the replies received side by side, the way
// smtp-server parses them (command lines end at LF, a 354 switches to message data ending at
// CRLF.CRLF, every command line gets exactly one reply), so it knows which envelope and which
// bytes each "250 … queued as" acknowledged, however mangled the session was.
import { connect } from 'node:net';
import type { Prng } from './prng.js';
import { LineSplitter } from './lines.js';
import { Condition } from './wait.js';

/** Recipient domains of generated mail; the test routes them (and the senders' domain) to its sink. */
export const FUZZ_DOMAINS = ['d0.fuzz.test', 'd1.fuzz.test', 'd2.fuzz.test', 'd3.fuzz.test'] as const;
export const SENDER_DOMAIN = 's.fuzz.test';

/** The listener's limits, so generated sessions land on both sides of them. */
export type FuzzContext = {
  maxRecipients: number;
  /** Bytes. */
  maxMessageSize: number;
  /** max_command_length: bytes of a command line without its line end. */
  maxCommandLength: number;
};

type Segment = { kind: 'command'; verb: string; bytes: Buffer } | { kind: 'data'; bytes: Buffer };

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

const CRLF = '\r\n';
const TERMINATOR = Buffer.from('\r\n.\r\n');
const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

const command = (line: string | Buffer, verb = String(line).split(/[ :]/)[0]!.toUpperCase()): Segment => ({
  kind: 'command',
  verb,
  bytes: Buffer.concat([Buffer.isBuffer(line) ? line : Buffer.from(line, 'latin1'), Buffer.from(CRLF)]),
});

/** Dot-stuffs content (CRLF lines) and appends the end-of-data line. */
function dataSegment(content: Buffer): Segment {
  const out: number[] = [];
  for (let i = 0; i < content.length; i++) {
    if (content[i] === DOT && (i === 0 || content[i - 1] === LF)) out.push(DOT);
    out.push(content[i]!);
  }
  return { kind: 'data', bytes: Buffer.concat([Buffer.from(out), Buffer.from('.\r\n')]) };
}

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// Mutations: each changes the segments in place and describes itself, or returns undefined when
// the session has nothing it applies to.

type Mutation = (r: Prng, segs: Segment[], ctx: FuzzContext) => string | undefined;

const isCommand = (s: Segment, verb?: string) => s.kind === 'command' && (verb === undefined || s.verb === verb);
const commandsOf = (segs: Segment[], verb?: string) => segs.flatMap((s, i) => (isCommand(s, verb) ? [i] : []));
const dataOf = (segs: Segment[]) => segs.flatMap((s, i) => (s.kind === 'data' ? [i] : []));

// A routed domain, so that an address the intake takes after all is delivered and checked.
const D = FUZZ_DOMAINS[0];

const BAD_ADDRESSES: readonly (string | Buffer)[] = [
  '', 'a', 'postmaster', 'a@', '@b.test', 'a@b@c.test', `a..b@${D}`, `.a@${D}`, `a.@${D}`, `a@-${D}`, `a@${D}.`,
  'a@d0..fuzz.test', `a b@${D}`, `"a b"@${D}`, `a<b@${D}`, `${'x'.repeat(300)}@${D}`, `${'x'.repeat(70)}@${D}`,
  'a@[127.0.0.1]', 'a@[IPv6:::1]', 'a@[999.1.1.1]', `@relay.test:a@${D}`, 'a@nowhere.test', `ü@${D}`, 'a@βόλος.fuzz.test',
  Buffer.from(`f\xe9@${D}`, 'latin1'), Buffer.from('a@d0.fuzz\xff.test', 'latin1'), Buffer.from(`a\x00@${D}`, 'latin1'),
  `a\u200b@${D}`, `A@${D.toUpperCase()}`,
];

const STRAY_COMMANDS = [
  'RSET', 'DATA', 'NOOP', 'QUIT', 'EHLO', 'HELO', 'EHLO bad_host!', 'EHLO a b', 'EHLO [127.0.0.1]', 'MAIL FROM:<>',
  `MAIL FROM:<a@${D}> SIZE=`, `MAIL FROM:<a@${D}> BODY=BINARYMIME`, `MAIL FROM:<a@${D}> SMTPUTF8`, `MAIL FROM:a@${D}`,
  'RCPT TO:<postmaster>', `RCPT TO:<a@${D}> NOTIFY=BOGUS`, `RCPT TO:<a@${D}> ORCPT=x`, 'BDAT 10 LAST', 'STARTTLS',
  'AUTH PLAIN AGFAYgA=', 'XCLIENT ADDR=1.2.3.4', 'EXPN list', 'TURN', 'WIZ', 'KILL', 'SHELL', 'GET / HTTP/1.1',
  'POST /x HTTP/1.0', '', ' ', 'MAIL', 'RCPT', 'DATA now', 'RSET x', 'VRFY', 'HELP me',
];

const SPECIAL_BYTES = ['\x00', '\r', '\n', '\r\n', '.', '\r\n.\r\n', '\x7f', '\xff', ' ', ':', '<', '>', '\t', '\r\n\r\n'];

const replaceAddress = (line: Buffer, address: Buffer): Buffer | undefined => {
  const open = line.indexOf('<');
  const close = line.indexOf('>', open);
  if (open < 0 || close < 0) return undefined;
  return Buffer.concat([line.subarray(0, open + 1), address, line.subarray(close)]);
};

const MUTATIONS: ReadonlyArray<readonly [number, Mutation]> = [
  [8, (r, segs) => {
    const i = r.below(segs.length);
    const b = segs[i]!.bytes;
    if (b.length === 0) return undefined;
    const at = r.below(b.length);
    const bit = r.below(8);
    const copy = Buffer.from(b);
    copy[at]! ^= 1 << bit;
    segs[i] = { ...segs[i]!, bytes: copy };
    return `flip(seg ${i} byte ${at} bit ${bit})`;
  }],
  [6, (r, segs) => {
    const i = r.below(segs.length);
    const b = segs[i]!.bytes;
    const at = r.below(b.length + 1);
    const ins = r.chance(0.5) ? Buffer.from(r.pick(SPECIAL_BYTES), 'latin1') : r.bytes(r.between(1, 8));
    segs[i] = { ...segs[i]!, bytes: Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]) };
    return `insert(seg ${i} @${at} ${JSON.stringify(ins.toString('latin1'))})`;
  }],
  [5, (r, segs) => {
    const i = r.below(segs.length);
    const b = segs[i]!.bytes;
    if (b.length === 0) return undefined;
    const at = r.below(b.length);
    const n = r.between(1, 16);
    segs[i] = { ...segs[i]!, bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + n)]) };
    return `delete(seg ${i} @${at} ${n})`;
  }],
  [4, (r, segs) => {
    const cmds = commandsOf(segs);
    if (cmds.length === 0) return undefined;
    const i = r.pick(cmds);
    const b = segs[i]!.bytes;
    const at = r.below(Math.max(1, b.length - 2));
    segs[i] = { ...segs[i]!, bytes: Buffer.concat([b.subarray(0, at), Buffer.alloc(r.between(1, 3)), b.subarray(at)]) };
    return `nul(seg ${i} @${at})`;
  }],
  [4, (r, segs) => {
    const cmds = commandsOf(segs);
    if (cmds.length < 2) return undefined;
    const a = r.pick(cmds);
    const b = r.pick(cmds);
    [segs[a], segs[b]] = [segs[b]!, segs[a]!];
    return `swap(${a}, ${b})`;
  }],
  [3, (r, segs) => {
    const i = r.below(segs.length);
    segs.splice(i, 0, segs[i]!);
    return `duplicate(${i})`;
  }],
  [4, (r, segs) => {
    if (segs.length < 2) return undefined;
    const i = r.below(segs.length);
    segs.splice(i, 1);
    return `remove(${i})`;
  }],
  [3, (r, segs) => {
    const datas = commandsOf(segs, 'DATA');
    if (datas.length === 0) return undefined;
    const d = r.pick(datas);
    let removed = 0;
    for (let i = d - 1; i >= 0 && !isCommand(segs[i]!, 'MAIL'); i--) {
      if (isCommand(segs[i]!, 'RCPT')) {
        segs.splice(i, 1);
        removed++;
      }
    }
    return `no-rcpt(before seg ${d}: ${removed})`;
  }],
  [4, (r, segs) => {
    const cmds = commandsOf(segs);
    if (cmds.length === 0) return undefined;
    const i = r.pick(cmds);
    const line = segs[i]!.bytes.toString('latin1');
    const verb = r.chance(0.5) ? r.text(r.between(1, 8), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') : r.pick(['DATA', 'RSET', 'MAIL', 'RCPT', 'QUIT', 'EHLO', 'NOOP', 'BDAT', 'XCLIENT']);
    segs[i] = command(line.replace(/^\S*/, verb).replace(/\r\n$/, ''), verb);
    return `verb(seg ${i} -> ${verb})`;
  }],
  [5, (r, segs) => {
    const at = r.below(segs.length + 1);
    const line = r.pick(STRAY_COMMANDS);
    segs.splice(at, 0, command(line));
    return `stray(@${at} ${JSON.stringify(line)})`;
  }],
  [3, (r, segs, ctx) => {
    const at = r.below(segs.length + 1);
    // Lines just under the limit stay clear of it: the prefix and CR count while a line is incomplete.
    const max = ctx.maxCommandLength;
    const n = r.chance(0.7) ? r.between(max + 1, max + 4000) : r.between(max - 300, max - 20);
    const eol = r.chance(0.8);
    const line = Buffer.concat([Buffer.from(r.pick(['NOOP ', 'RCPT TO:<', 'X'])), Buffer.from(r.text(n)), Buffer.from(eol ? CRLF : '')]);
    segs.splice(at, 0, { kind: 'command', verb: 'LONG', bytes: line });
    return `overlong(@${at} ${line.length} bytes${eol ? '' : ', no EOL'})`;
  }],
  [4, (r, segs) => {
    const mails = commandsOf(segs, 'MAIL');
    if (mails.length === 0) return undefined;
    const i = r.pick(mails);
    const value = r.pick(['99999999999999999999', '999999999999999999999', '-1', 'abc', '0', '1e9', '', '18446744073709551616', '026214400']);
    const line = segs[i]!.bytes.toString('latin1').replace(/\r\n$/, '').replace(/ SIZE=\S*/, '');
    segs[i] = command(`${line} SIZE=${value}`, 'MAIL');
    return `size(seg ${i} SIZE=${value})`;
  }],
  [6, (r, segs) => {
    const cmds = [...commandsOf(segs, 'MAIL'), ...commandsOf(segs, 'RCPT')];
    if (cmds.length === 0) return undefined;
    const i = r.pick(cmds);
    const address = r.pick(BAD_ADDRESSES);
    const line = replaceAddress(segs[i]!.bytes, Buffer.isBuffer(address) ? address : Buffer.from(address));
    if (!line) return undefined;
    segs[i] = { ...segs[i]!, bytes: line };
    return `bad-address(seg ${i} ${JSON.stringify(address.toString())})`;
  }],
  [5, (r, segs) => {
    const datas = dataOf(segs);
    if (datas.length === 0) return undefined;
    const i = r.pick(datas);
    const b = segs[i]!.bytes;
    const at = r.below(Math.max(1, b.length - 3));
    const ins = r.pick(['\n', '\r', '\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\n..\n']);
    segs[i] = { kind: 'data', bytes: Buffer.concat([b.subarray(0, at), Buffer.from(ins), b.subarray(at)]) };
    return `bare-eol(seg ${i} @${at} ${JSON.stringify(ins)})`;
  }],
  [3, (r, segs) => {
    const datas = dataOf(segs);
    if (datas.length === 0) return undefined;
    const i = r.pick(datas);
    const b = segs[i]!.bytes;
    const at = r.below(b.length);
    segs[i] = { kind: 'data', bytes: Buffer.concat([b.subarray(0, at), TERMINATOR, b.subarray(at)]) };
    return `early-end(seg ${i} @${at})`;
  }],
  [2, (r, segs) => {
    const datas = dataOf(segs);
    if (datas.length === 0) return undefined;
    const i = r.pick(datas);
    segs[i] = { kind: 'data', bytes: segs[i]!.bytes.subarray(0, -3) };
    return `unterminated(seg ${i})`;
  }],
];

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// The server as the client can tell: pairs written bytes with replies.

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

// ---------------------------------------------------------------------------------------------
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

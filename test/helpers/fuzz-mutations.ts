// Mutations of a valid session's segments: each changes them in place and describes itself, or
// returns undefined when the session has nothing it applies to.
import type { Prng } from './prng.js';
import { CRLF, FUZZ_DOMAINS, type FuzzContext, type Segment, TERMINATOR, command } from './fuzz-segments.js';

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

export const MUTATIONS: ReadonlyArray<readonly [number, Mutation]> = [
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

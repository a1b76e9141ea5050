// The pieces of a generated SMTP client session: command lines and dot-stuffed message data,
// the domains generated mail goes to, and the listener limits sessions are generated around.

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

/** A command line (with its CRLF) or a message's data (dot-stuffed, with its end line). */
export type Segment = { kind: 'command'; verb: string; bytes: Buffer } | { kind: 'data'; bytes: Buffer };

export const CRLF = '\r\n';
export const TERMINATOR = Buffer.from('\r\n.\r\n');
export const LF = 0x0a;
export const CR = 0x0d;
export const DOT = 0x2e;

export const command = (line: string | Buffer, verb = String(line).split(/[ :]/)[0]!.toUpperCase()): Segment => ({
  kind: 'command',
  verb,
  bytes: Buffer.concat([Buffer.isBuffer(line) ? line : Buffer.from(line, 'latin1'), Buffer.from(CRLF)]),
});

/** Dot-stuffs content (CRLF lines) and appends the end-of-data line. */
export function dataSegment(content: Buffer): Segment {
  const out: number[] = [];
  for (let i = 0; i < content.length; i++) {
    if (content[i] === DOT && (i === 0 || content[i - 1] === LF)) out.push(DOT);
    out.push(content[i]!);
  }
  return { kind: 'data', bytes: Buffer.concat([Buffer.from(out), Buffer.from('.\r\n')]) };
}

// Postfix's smtp-sink as a receiving MX on a loopback address: one process per MX, each transaction dumped to a file (-d) and parsed back.
//
// smtp-sink listens on a port of its own; a tap (tap.ts) on the MX's address and the shared
// remote_smtp_port relays to it, records what Impulse sent, and for a `full` sink adds SMTPUTF8
// to the EHLO reply (smtp-sink 3.7 has no option to announce it; it takes any MAIL parameter).
//
// The dump format (smtp-sink(1)): X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args, one
// X-Rcpt-Args per RCPT, smtp-sink's own three-line Received header, then the message as received
// with every <CR> dropped and dot-stuffing undone, then one empty line. Address arguments are
// printed with non-ASCII bytes as '?'. A file is created at MAIL and closed before the 250 to the
// final '.', so once the client has that 250 (Impulse logs `delivery`) the file is complete.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { killOnExit } from '../helpers/cleanup.js';
import { freePort } from '../helpers/ports.js';
import { type Tap, startTap } from './tap.js';

const SMTP_SINK = '/usr/sbin/smtp-sink';

/**
 * `full`: PIPELINING, 8BITMIME, DSN, ENHANCEDSTATUSCODES (smtp-sink's defaults, with AUTH, XCLIENT
 * and XFORWARD) plus SMTPUTF8 added by the tap. `bare`: everything smtp-sink lets one withhold is
 * withheld (-8 -N -p -E -a -C -F): the EHLO reply is the host name alone.
 */
export type SinkFeatures = 'full' | 'bare';

export type SmtpSinkOptions = {
  host: string;
  /** The port Impulse connects to (its remote_smtp_port). */
  port: number;
  /** Where the dumps go (a directory is made in it). */
  dir: string;
  /** Greeting and EHLO name. */
  name: string;
  features?: SinkFeatures;
  /** Refuse every RCPT with this reply (smtp-sink -f RCPT -B), e.g. `550 5.1.1 No such user`. */
  rejectRcpt?: string;
  /** Refuse every RCPT with this temporary reply (smtp-sink -r RCPT -b). */
  deferRcpt?: string;
};

export type SinkDump = {
  file: string;
  helo: string;
  /** The MAIL FROM address as dumped ('?' for each non-ASCII byte), '' for <>. */
  mailFrom: string;
  /** Everything after the address on the MAIL command, e.g. `BODY=8BITMIME RET=HDRS`. */
  mailParams: string;
  rcpts: Array<{ address: string; params: string }>;
  /** The message as smtp-sink stored it: LF line ends, the trailing empty line removed. */
  message: Buffer;
};

export type SmtpSink = {
  host: string;
  name: string;
  features: SinkFeatures;
  tap: Tap;
  /** Every complete transaction dumped so far (see the file comment on completeness). */
  dumps(): SinkDump[];
  /** The dumps addressed to this recipient (as dumped: '?' for non-ASCII bytes). */
  copiesFor(address: string): SinkDump[];
  close(): Promise<void>;
};

const USER = 'postfix';

/** An address the way smtp-sink prints it in X-Rcpt-Args (each non-ASCII byte as '?'), lowercased. */
export function asDumped(address: string): string {
  return address.replace(/[^\x00-\x7f]/gu, (ch) => '?'.repeat(Buffer.byteLength(ch))).toLowerCase();
}

function addressAndParams(args: string): { address: string; params: string } {
  const m = /^\s*<([^>]*)>\s*(.*)$/.exec(args);
  if (!m) return { address: args.trim(), params: '' };
  return { address: m[1]!, params: m[2]!.trim() };
}

/** Parses one dump file; undefined while it is still empty (MAIL seen, nothing flushed). */
function parseDump(file: string, bytes: Buffer): SinkDump | undefined {
  if (bytes.length === 0) return undefined;
  const text = bytes.toString('latin1');
  // smtp-sink's Received header: `Received: from ...`, `\tby ... (smtp-sink) ...`, `\t<date>`.
  const received = /^Received: [^\n]*\n\tby [^\n]*\(smtp-sink\)[^\n]*\n\t[^\n]*\n/m.exec(text);
  if (!received) throw new Error(`${file}: no smtp-sink Received header in ${JSON.stringify(text.slice(0, 400))}`);
  const head = text.slice(0, received.index);
  const field = (name: string) => [...head.matchAll(new RegExp(`^${name}: ?(.*)$`, 'gm'))].map((m) => m[1]!);
  const mail = addressAndParams(field('X-Mail-Args')[0] ?? '');
  let message = bytes.subarray(received.index + received[0].length);
  if (message.length > 0 && message[message.length - 1] === 0x0a) message = message.subarray(0, message.length - 1);
  return {
    file,
    helo: field('X-Helo-Args')[0] ?? '',
    mailFrom: mail.address,
    mailParams: mail.params,
    rcpts: field('X-Rcpt-Args').map(addressAndParams),
    message,
  };
}

async function waitListening(host: string, port: number, proc: ChildProcess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`smtp-sink on ${host}:${port} exited (${proc.exitCode ?? proc.signalCode})`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    // smtp-sink says nothing when it is listening; a refused probe is retried shortly.
    if (Date.now() > deadline) throw new Error(`smtp-sink not listening on ${host}:${port} after ${timeoutMs} ms`);
    await delay(20);
  }
}

export async function startSmtpSink(opts: SmtpSinkOptions): Promise<SmtpSink> {
  const features = opts.features ?? 'full';
  const dumpDir = join(opts.dir, `sink-${opts.host}`);
  mkdirSync(dumpDir, { recursive: true });
  // smtp-sink, run as root, must drop to a user (-u) after binding; that user writes the dumps.
  const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
  chownSync(dumpDir, uid, -1);
  const innerPort = await freePort(opts.host);
  const args = ['-u', USER, '-h', opts.name, '-d', join(dumpDir, 'mail.')];
  if (features === 'bare') args.push('-8', '-N', '-p', '-E', '-a', '-C', '-F');
  if (opts.rejectRcpt) args.push('-f', 'RCPT', '-B', opts.rejectRcpt);
  if (opts.deferRcpt) args.push('-r', 'RCPT', '-b', opts.deferRcpt);
  args.push(`${opts.host}:${innerPort}`, '64');
  const proc = spawn(SMTP_SINK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(proc);
  let output = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (output += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    await waitListening(opts.host, innerPort, proc);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${(err as Error).message}: ${SMTP_SINK} ${args.join(' ')}\n${output}`);
  }
  const tap = await startTap({
    host: opts.host,
    port: opts.port,
    target: { host: opts.host, port: innerPort },
    ...(features === 'full' ? { ehloAdd: ['SMTPUTF8'] } : {}),
  });

  const sink: SmtpSink = {
    host: opts.host,
    name: opts.name,
    features,
    tap,
    dumps() {
      return readdirSync(dumpDir).sort().flatMap((f) => {
        const d = parseDump(f, readFileSync(join(dumpDir, f)));
        return d ? [d] : [];
      });
    },
    copiesFor(address) {
      const wanted = asDumped(address);
      return sink.dumps().filter((d) => d.rcpts.some((r) => r.address.toLowerCase() === wanted));
    },
    async close() {
      await tap.close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
  return sink;
}

// A TCP relay in front of an SMTP server that records both directions of every session, and can add keywords to the server's EHLO reply.
//
// The interop suite puts one between Postfix and Impulse (to see what Postfix sends) and one in
// front of each smtp-sink (to see what Impulse sends, byte for byte: smtp-sink's dump drops every
// <CR> and prints non-ASCII address bytes as '?'). smtp-sink cannot announce SMTPUTF8; a tap with
// `ehloAdd: ['SMTPUTF8']` inserts `250-SMTPUTF8` before the last line of the EHLO reply and passes
// everything else through untouched.
import { type Server, type Socket, connect, createServer } from 'node:net';
import { Condition } from '../helpers/wait.js';

export type TapChunk = { from: 'client' | 'server'; at: number; data: Buffer };

export type TapSession = {
  id: number;
  /** As relayed: server chunks after any EHLO keyword was added. */
  chunks: TapChunk[];
  closed: boolean;
  /** Which side ended the connection first (FIN or reset), and when (performance.now()). */
  endedBy?: 'client' | 'server' | 'client reset' | 'server reset';
  endedAt?: number;
};

export type Tap = {
  host: string;
  port: number;
  sessions: TapSession[];
  /** Every line the clients sent (command and message lines), per session, CRLF removed. */
  clientLines(session: TapSession): Buffer[];
  /**
   * The client's commands grouped by the server's replies: each group is what the client sent
   * before the next server chunk arrived, so a group of several commands is one pipelined batch.
   * Message content is one `<content>` entry; the final dot is `.`.
   */
  commandBatches(session: TapSession): string[][];
  /** The whole session as `C: `/`S: ` lines, for failure messages (message content elided). */
  transcript(session: TapSession): string;
  waitForSessions(n: number, timeoutMs?: number): Promise<TapSession[]>;
  close(): Promise<void>;
};

function splitLines(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = data.indexOf('\r\n'); i >= 0; i = data.indexOf('\r\n', start)) {
    out.push(data.subarray(start, i));
    start = i + 2;
  }
  if (start < data.length) out.push(data.subarray(start));
  return out;
}

/** Adds `250-KEYWORD` lines before the final `250 ` line of the reply that follows an EHLO. */
class EhloEditor {
  private pending = false;
  private rest = '';

  constructor(private readonly keywords: string[]) {}

  fromClient(data: Buffer): void {
    if (/(^|\n)EHLO /i.test(data.toString('latin1'))) this.pending = true;
  }

  fromServer(data: Buffer): Buffer {
    if (!this.pending && this.rest === '') return data;
    this.rest += data.toString('latin1');
    let out = '';
    let eol: number;
    while ((eol = this.rest.indexOf('\r\n')) >= 0) {
      const line = this.rest.slice(0, eol + 2);
      this.rest = this.rest.slice(eol + 2);
      if (this.pending && /^250 /.test(line)) {
        out += this.keywords.map((k) => `250-${k}\r\n`).join('');
        this.pending = false;
      }
      out += line;
    }
    return Buffer.from(out, 'latin1');
  }
}

export async function startTap(opts: {
  host: string;
  port: number;
  target: { host: string; port: number };
  ehloAdd?: string[];
}): Promise<Tap> {
  const changed = new Condition();
  const sessions: TapSession[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const session: TapSession = { id: sessions.length + 1, chunks: [], closed: false };
    sessions.push(session);
    changed.notify();
    const upstream = connect({ host: opts.target.host, port: opts.target.port });
    const editor = opts.ehloAdd?.length ? new EhloEditor(opts.ehloAdd) : undefined;
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const record = (from: TapChunk['from'], data: Buffer) => {
      session.chunks.push({ from, at: performance.now(), data });
      changed.notify();
    };
    client.on('data', (data: Buffer) => {
      editor?.fromClient(data);
      record('client', data);
      upstream.write(data);
    });
    upstream.on('data', (data: Buffer) => {
      const relayed = editor ? editor.fromServer(data) : data;
      record('server', relayed);
      client.write(relayed);
    });
    const ended = (by: NonNullable<TapSession['endedBy']>) => {
      if (session.endedBy) return;
      session.endedBy = by;
      session.endedAt = performance.now();
    };
    const end = () => {
      session.closed = true;
      client.destroy();
      upstream.destroy();
      changed.notify();
    };
    client.on('end', () => {
      ended('client');
      upstream.end();
    });
    upstream.on('end', () => {
      ended('server');
      client.end();
    });
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {
      ended('client reset');
      end();
    });
    upstream.on('error', () => {
      ended('server reset');
      end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const bytesFrom = (s: TapSession, from: TapChunk['from']) =>
    Buffer.concat(s.chunks.filter((c) => c.from === from).map((c) => c.data));

  const tap: Tap = {
    host: opts.host,
    port: opts.port,
    sessions,
    clientLines: (s) => splitLines(bytesFrom(s, 'client')),
    commandBatches(s) {
      const batches: string[][] = [];
      let batch: string[] = [];
      let pending = '';
      let inData = false;
      for (const c of s.chunks) {
        if (c.from === 'server') {
          if (batch.length) batches.push(batch);
          batch = [];
          if (/^354 /m.test(c.data.toString('latin1'))) inData = true;
          continue;
        }
        pending += c.data.toString('latin1');
        let eol: number;
        while ((eol = pending.indexOf('\r\n')) >= 0) {
          const line = Buffer.from(pending.slice(0, eol), 'latin1').toString('utf8');
          pending = pending.slice(eol + 2);
          if (!inData) batch.push(line);
          else if (line === '.') {
            inData = false;
            batch.push('.');
          } else if (batch[batch.length - 1] !== '<content>') batch.push('<content>');
        }
      }
      if (batch.length) batches.push(batch);
      return batches;
    },
    transcript(s) {
      const out: string[] = [];
      let inData = false;
      for (const c of s.chunks) {
        for (const line of splitLines(c.data)) {
          const text = line.toString('utf8');
          if (c.from === 'server') {
            out.push(`S: ${text}`);
            if (text.startsWith('354')) inData = true;
          } else if (inData) {
            if (text === '.') {
              inData = false;
              out.push('C: .');
            }
          } else {
            out.push(`C: ${text}`);
          }
        }
      }
      return out.join('\n');
    },
    waitForSessions(n, timeoutMs = 15000) {
      return changed.until(() => (sessions.length >= n ? sessions.slice() : undefined), timeoutMs,
        () => `${sessions.length} session(s) through the tap on ${opts.host}:${opts.port}, wanted ${n}`);
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return tap;
}

/**
 * How a client batched its commands over every session of a tap, e.g. `MAIL RCPT+ DATA` (one
 * pipelined batch) or `<content> . QUIT`, with how often each shape was seen.
 */
export function batchShapes(tap: Tap): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of tap.sessions) {
    for (const batch of tap.commandBatches(s)) {
      const verbs: string[] = [];
      for (const line of batch) {
        const verb = line === '.' || line === '<content>' ? line : (line.split(' ')[0] ?? '').toUpperCase();
        const last = verbs[verbs.length - 1];
        if (last === verb) verbs[verbs.length - 1] = `${verb}+`;
        else if (last !== `${verb}+`) verbs.push(verb);
      }
      const shape = verbs.join(' ');
      out[shape] = (out[shape] ?? 0) + 1;
    }
  }
  return out;
}

/**
 * The distinct parameter sets a client put on MAIL and RCPT over every session of a tap, values
 * of SIZE, ENVID and ORCPT elided: e.g. `SIZE=… BODY=8BITMIME SMTPUTF8`.
 */
export function parameterSets(tap: Tap): { mail: string[]; rcpt: string[] } {
  const mail = new Set<string>();
  const rcpt = new Set<string>();
  const elide = (params: string) => params.replace(/\b(SIZE|ENVID|ORCPT)=[^ ]*/gi, '$1=…').trim();
  for (const s of tap.sessions) {
    for (const line of tap.clientLines(s).map((b) => b.toString('utf8'))) {
      const m = /^(MAIL FROM|RCPT TO):<[^>]*>(.*)$/i.exec(line);
      if (m) (m[1]!.toUpperCase() === 'MAIL FROM' ? mail : rcpt).add(elide(m[2]!));
    }
  }
  return { mail: [...mail].sort(), rcpt: [...rcpt].sort() };
}

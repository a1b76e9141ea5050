// A receiving MTA written on bare sockets, for faults smtp-server cannot produce: closing the
// connection at an exact point of the dialogue, trickling a reply a byte at a time, answering
// late. Without a fault it is a plain, correct SMTP server (no extensions, so commands come one
// at a time) that keeps every message whose final dot it read, whether or not it acknowledged it.
import { type Server, type Socket, createServer } from 'node:net';
import { LineSplitter } from './lines.js';
import { Condition } from './wait.js';

/**
 * Where the dialogue is: the greeting, or the reply owed to a command ('dot': to the end of the
 * message). 'body' is the first line of message content, where only `drop` means anything.
 */
export type ScriptStage = 'greeting' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'body' | 'dot' | 'rset' | 'quit';

export type ScriptAction =
  /** Close the connection at once, without a reply. */
  | { drop: true }
  /** Send this reply instead of the normal one; a multi-line reply has its lines joined by CRLF. */
  | { reply: string }
  /** Send the reply (given or normal) one byte every `trickle` milliseconds. */
  | { trickle: number; reply?: string }
  /** Wait, then send the reply (given or normal). */
  | { delay: number; reply?: string };

export type ScriptContext = {
  stage: ScriptStage;
  /** The command's argument: the address of MAIL FROM and RCPT TO. */
  arg: string;
  /** 1 for the first TCP connection the server accepted, 2 for the next, … */
  connection: number;
};

/** Decides the fault, if any, at each stage; undefined lets the stage go normally. */
export type Script = (ctx: ScriptContext) => ScriptAction | undefined;

export type ScriptedMessage = {
  connection: number;
  mailFrom: string;
  rcptTo: string[];
  /** The content after un-dot-stuffing, without the terminating '.' line. */
  raw: Buffer;
  /** False when the server read the final dot but never sent a 2xx for it. */
  acknowledged: boolean;
};

export type ScriptedSmtp = {
  host: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** The command lines each connection sent (message content excluded), by connection number - 1. */
  transcripts: string[][];
  messages: ScriptedMessage[];
  waitForMessages(n: number, timeoutMs?: number): Promise<ScriptedMessage[]>;
  close(): Promise<void>;
};

const NORMAL: Record<Exclude<ScriptStage, 'body'>, string> = {
  greeting: '220 scripted.test ESMTP',
  ehlo: '250 scripted.test',
  mail: '250 2.1.0 Ok',
  rcpt: '250 2.1.5 Ok',
  data: '354 End data with <CR><LF>.<CR><LF>',
  dot: '250 2.0.0 Ok: queued',
  rset: '250 2.0.0 Ok',
  quit: '221 2.0.0 Bye',
};

const STAGE_OF: Record<string, Exclude<ScriptStage, 'body'>> = { EHLO: 'ehlo', HELO: 'ehlo', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data', RSET: 'rset', QUIT: 'quit' };

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function addressOf(arg: string): string {
  return /<([^>]*)>/.exec(arg)?.[1] ?? arg.replace(/^[A-Z ]+:/i, '').trim();
}

function summary(s: ScriptedSmtp): string {
  return `scripted server ${s.host}:${s.port}: ${s.connections} connection(s), transcripts ${JSON.stringify(s.transcripts)}, ` +
    `${s.messages.length} message(s) [${s.messages.map((m) => `${m.rcptTo.join(',')}${m.acknowledged ? '' : ' (unacknowledged)'}`).join('; ')}]`;
}

export async function startScriptedSmtp(opts: { host: string; port: number; script?: Script }): Promise<ScriptedSmtp> {
  const script = opts.script ?? (() => undefined);
  const changed = new Condition();
  const sockets = new Set<Socket>();

  const serve = (socket: Socket, connection: number): void => {
    const transcript: string[] = [];
    s.transcripts.push(transcript);
    let envelope: { mailFrom: string; rcptTo: string[] } = { mailFrom: '', rcptTo: [] };
    let body: string[] | undefined;
    let bodyStarted = false;
    const lines = new LineSplitter();
    // One stage at a time: a delayed or trickled reply holds back the handling of what follows.
    let queue = Promise.resolve();
    let gone = false;
    socket.once('close', () => {
      gone = true;
    });
    const drop = () => {
      gone = true;
      socket.destroy();
    };

    // Sends the reply the script chose for this stage; resolves with it, or undefined once the connection is gone.
    const act = async (stage: Exclude<ScriptStage, 'body'>, arg: string): Promise<string | undefined> => {
      const action = script({ stage, arg, connection });
      if (action && 'drop' in action) {
        drop();
        return undefined;
      }
      const text = action && 'reply' in action && action.reply !== undefined ? action.reply : NORMAL[stage];
      if (action && 'delay' in action) await pause(action.delay);
      if (gone) return undefined;
      if (action && 'trickle' in action) {
        for (const byte of Buffer.from(`${text}\r\n`)) {
          if (gone) return undefined;
          socket.write(Buffer.from([byte]));
          await pause(action.trickle);
        }
      } else {
        socket.write(`${text}\r\n`);
      }
      return text;
    };

    const onCommand = async (line: string): Promise<void> => {
      transcript.push(line);
      const stage = STAGE_OF[line.slice(0, 4).toUpperCase()];
      if (!stage) {
        socket.write('502 5.5.2 Command not recognized\r\n');
        return;
      }
      const arg = stage === 'mail' || stage === 'rcpt' ? addressOf(line) : '';
      if (stage === 'mail' || stage === 'rset') envelope = { mailFrom: '', rcptTo: [] };
      const sent = await act(stage, arg);
      if (sent === undefined) return;
      if (stage === 'mail' && sent.startsWith('2')) envelope.mailFrom = arg;
      if (stage === 'rcpt' && sent.startsWith('2')) envelope.rcptTo.push(arg);
      if (stage === 'data' && sent.startsWith('354')) body = [];
      if (stage === 'quit') socket.end();
    };

    const onBodyLine = (line: string): Promise<void> | undefined => {
      if (!bodyStarted) {
        bodyStarted = true;
        const action = script({ stage: 'body', arg: '', connection });
        if (action && 'drop' in action) {
          drop();
          return undefined;
        }
      }
      if (line !== '.') {
        body!.push(line.startsWith('.') ? line.slice(1) : line);
        return undefined;
      }
      const message: ScriptedMessage = {
        connection, ...envelope, raw: Buffer.from(body!.map((l) => `${l}\r\n`).join(''), 'latin1'), acknowledged: false,
      };
      body = undefined;
      bodyStarted = false;
      envelope = { mailFrom: '', rcptTo: [] };
      s.messages.push(message);
      return act('dot', '').then((sent) => {
        message.acknowledged = sent?.startsWith('2') ?? false;
        changed.notify();
      });
    };

    socket.setEncoding('latin1');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) {
        queue = queue.then(() => (gone ? undefined : body ? onBodyLine(line) : onCommand(line)));
      }
    });
    queue = queue.then(() => act('greeting', '')).then(() => undefined);
  };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    s.connections++;
    serve(socket, s.connections);
  });

  const s: ScriptedSmtp = {
    host: opts.host,
    port: opts.port,
    connections: 0,
    transcripts: [],
    messages: [],
    waitForMessages(n, timeoutMs = 15000) {
      return changed.until(() => (s.messages.length >= n ? s.messages.slice() : undefined), timeoutMs,
        () => `waiting for ${n} message(s); ${summary(s)}`);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return s;
}

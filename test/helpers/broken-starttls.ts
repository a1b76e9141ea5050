// A receiving MTA whose TLS is broken: it offers STARTTLS and answers 220 to it, then replies to
// the client's handshake with bytes that are not TLS and hangs up. A session that does not ask
// for STARTTLS is served in plain text, so a client that falls back can deliver.
import { type Socket, createServer } from 'node:net';
import { LineSplitter } from './lines.js';
import { Condition } from './wait.js';

export type PlainMessage = { mailFrom: string; rcptTo: string[]; raw: string };

export type BrokenStartTls = {
  host: string;
  port: number;
  /** Messages accepted, all over plain-text sessions. */
  messages: PlainMessage[];
  /** STARTTLS commands received: each one a handshake this server broke. */
  startTls: number;
  waitForRecipients(addresses: string[], timeoutMs?: number): Promise<PlainMessage[]>;
  waitForStartTls(n: number, timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
};

const NAME = 'broken-tls.test';

function addressIn(arg: string): string {
  return /<([^>]*)>/.exec(arg)?.[1] ?? '';
}

export async function startBrokenStartTls(host: string, port: number): Promise<BrokenStartTls> {
  const changed = new Condition();
  const sockets = new Set<Socket>();

  const serve = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const lines = new LineSplitter();
    let state: 'command' | 'data' | 'handshake' = 'command';
    // A function, not a comparison: STARTTLS changes state inside the loop that asks.
    const turnedTls = () => state === 'handshake';
    let envelope: { mailFrom: string; rcptTo: string[] } = { mailFrom: '', rcptTo: [] };
    let data: string[] = [];
    const say = (line: string) => socket.write(`${line}\r\n`);

    const command = (line: string) => {
      const verb = line.split(' ')[0]!.toUpperCase();
      const arg = line.slice(verb.length).trim();
      switch (verb) {
        case 'EHLO':
          return say(`250-${NAME}\r\n250 STARTTLS`);
        case 'HELO':
          return say(`250 ${NAME}`);
        case 'STARTTLS':
          // The client sends nothing else in plain text before its TLS hello.
          state = 'handshake';
          lines.clear();
          broken.startTls++;
          changed.notify();
          return say('220 2.0.0 Ready to start TLS');
        case 'MAIL':
          envelope = { mailFrom: addressIn(arg), rcptTo: [] };
          return say('250 2.1.0 Ok');
        case 'RCPT':
          envelope.rcptTo.push(addressIn(arg));
          return say('250 2.1.5 Ok');
        case 'DATA':
          state = 'data';
          data = [];
          return say('354 End data with <CR><LF>.<CR><LF>');
        case 'RSET':
        case 'NOOP':
          return say('250 2.0.0 Ok');
        case 'QUIT':
          say('221 2.0.0 Bye');
          return socket.end();
        default:
          return say('502 5.5.2 Command not recognized');
      }
    };

    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      if (state === 'handshake') {
        // The client's hello has arrived: answer it with something that is not a TLS record.
        socket.end('this is not TLS\r\n');
        return;
      }
      for (const line of lines.push(chunk)) {
        // After STARTTLS nothing more is plain text: the rest of the chunk is dropped.
        if (turnedTls()) break;
        if (state === 'command') {
          command(line);
        } else if (line === '.') {
          state = 'command';
          broken.messages.push({ ...envelope, raw: data.map((l) => (l.startsWith('.') ? l.slice(1) : l)).join('\r\n') });
          changed.notify();
          say('250 2.0.0 Ok: queued');
        } else {
          data.push(line);
        }
      }
    });
    say(`220 ${NAME} ESMTP`);
  };

  const server = createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });

  const broken: BrokenStartTls = {
    host,
    port,
    messages: [],
    startTls: 0,
    waitForRecipients(addresses, timeoutMs = 15000) {
      const addressedTo = () => broken.messages.filter((m) => m.rcptTo.some((r) => addresses.includes(r)));
      return changed.until(
        () => (addresses.every((a) => addressedTo().some((m) => m.rcptTo.includes(a))) ? addressedTo() : undefined),
        timeoutMs,
        () => `waiting for recipients ${addresses.join(', ')}; got ${JSON.stringify(broken.messages.map((m) => m.rcptTo))}`,
      );
    },
    waitForStartTls(n, timeoutMs = 15000) {
      return changed.until(() => (broken.startTls >= n ? broken.startTls : undefined), timeoutMs, () => `${broken.startTls} STARTTLS, wanted ${n}`);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
  return broken;
}

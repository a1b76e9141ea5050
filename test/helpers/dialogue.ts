// A bare socket client for asserting exact reply text, which a full SMTP client would hide.
import { connect } from 'node:net';
import { LineSplitter } from './lines.js';

export type DialogueOptions = {
  host: string;
  port: number;
  localAddress?: string;
  /** Sent one by one with CRLF appended; each waits for its reply, except message lines after a 354. */
  lines: string[];
  timeoutMs?: number;
};

/**
 * Every reply in order, greeting first; a multi-line reply is one entry with its lines joined by
 * '\n'. Stops early (without error) when the server closes the connection.
 */
export function smtpDialogue(opts: DialogueOptions): Promise<string[]> {
  const timeout = opts.timeoutMs ?? 10000;
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: opts.host,
      port: opts.port,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    const replies: string[] = [];
    let partial: string[] = [];
    const lines = new LineSplitter();
    let next = 0;
    let inData = false;
    let done = false;
    let timer: NodeJS.Timeout | undefined;

    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(Object.assign(err, { replies }));
      else resolve(replies);
    };
    const expectReply = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => finish(new Error(`no SMTP reply within ${timeout} ms; replies so far: ${JSON.stringify(replies)}`)),
        timeout,
      );
    };
    // Writes lines until one needs a reply; message content after a 354 does not get one.
    const sendNext = () => {
      while (next < opts.lines.length) {
        const line = opts.lines[next++]!;
        socket.write(line + '\r\n');
        if (!inData || line === '.' || line.endsWith('\r\n.')) {
          inData = false;
          expectReply();
          return;
        }
      }
      socket.end();
      finish();
    };
    const onReply = (reply: string) => {
      replies.push(reply);
      if (reply.startsWith('354')) inData = true;
      sendNext();
    };

    expectReply();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) {
        partial.push(line);
        if (!/^\d{3}-/.test(line)) {
          const reply = partial.join('\n');
          partial = [];
          onReply(reply);
        }
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const wrapped = new Error(`${err.message}; replies so far: ${JSON.stringify(replies)}`);
      finish(Object.assign(wrapped, { code: err.code }));
    });
    socket.on('close', () => finish());
  });
}

// A client that writes exact bytes and reads replies as they come: for what a full SMTP client
// would normalise away (bare <CR>/<LF>, overlong lines, silence) and for counting the replies a
// server really sent. Replies are parsed like smtpDialogue's: a multi-line reply is one entry,
// its lines joined by '\n'.
import { once } from 'node:events';
import { type Socket, connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { LineSplitter } from './lines.js';
import { Condition } from './wait.js';

export type RawSmtpOptions = { host: string; port: number; localAddress?: string; timeoutMs?: number };

export class RawSmtp {
  /** Every reply received so far, greeting first. */
  readonly replies: string[] = [];
  private readonly changed = new Condition();
  private consumed = 0;
  private readonly lines = new LineSplitter();
  private partial: string[] = [];
  private ended = false;
  private readonly onChunk = (chunk: string) => this.onData(chunk);

  private constructor(private socket: Socket, private readonly timeoutMs: number) {
    this.listen(socket);
  }

  /** Connects and resolves once the greeting (or a refusal in its place) has arrived. */
  static async connect(opts: RawSmtpOptions): Promise<RawSmtp> {
    const socket = connect({ host: opts.host, port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const client = new RawSmtp(socket, opts.timeoutMs ?? 10000);
    try {
      await client.reply();
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return client;
  }

  get greeting(): string {
    return this.replies[0]!;
  }

  /** True once the server closed the connection. */
  get closed(): boolean {
    return this.ended;
  }

  /** Writes bytes as given: no line ending is added. */
  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** Writes one command line with CRLF and resolves with its reply. */
  command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** The next reply not returned before; rejects if none comes in time or the server closed first. */
  reply(timeoutMs = this.timeoutMs): Promise<string> {
    return this.changed.until(() => {
      if (this.consumed < this.replies.length) return this.replies[this.consumed++]!;
      if (this.ended) throw new Error(`connection closed; replies: ${JSON.stringify(this.replies)}`);
      return undefined;
    }, timeoutMs, () => `no reply; replies so far: ${JSON.stringify(this.replies)}`);
  }

  /** Resolves once the server has closed the connection. */
  waitClosed(timeoutMs = this.timeoutMs): Promise<true> {
    return this.changed.until(() => (this.ended ? true : undefined), timeoutMs,
      () => `connection still open; replies: ${JSON.stringify(this.replies)}`);
  }

  /** STARTTLS: resolves with the reply, after the handshake when it was 220 (any certificate is taken). */
  async startTls(): Promise<string> {
    const reply = await this.command('STARTTLS');
    if (!reply.startsWith('220')) return reply;
    this.socket.off('data', this.onChunk);
    const secure = tlsConnect({ socket: this.socket, rejectUnauthorized: false });
    await once(secure, 'secureConnect');
    this.socket = secure;
    this.listen(secure);
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.setEncoding('latin1');
    socket.on('data', this.onChunk);
    // A reset from a server that closed first is still the end of the session.
    socket.on('error', () => this.onEnd());
    socket.on('close', () => this.onEnd());
  }

  private onData(chunk: string): void {
    for (const line of this.lines.push(chunk)) {
      this.partial.push(line);
      if (!/^\d{3}-/.test(line)) {
        this.replies.push(this.partial.join('\n'));
        this.partial = [];
      }
    }
    this.changed.notify();
  }

  private onEnd(): void {
    this.ended = true;
    this.changed.notify();
  }
}

// A receiving MTA on a loopback address, standing in for a remote MX. Replies can be scripted per
// stage, so tests drive the daemon through deferrals and bounces with a real SMTP conversation.
import type { Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { freePort } from './ports.js';
import { Condition } from './wait.js';

export type SinkStage = 'connect' | 'mail' | 'rcpt' | 'data';
export type SinkReply = { code: number; message: string };

export type SinkMessage = {
  /** '' for the null sender. */
  mailFrom: string;
  rcptTo: string[];
  /** The DATA bytes after un-dot-stuffing, without the terminating '.' line. */
  raw: Buffer;
  remoteAddress: string;
  helo: string;
  connectionId: string;
  receivedAt: number;
  /** True when the message came over a STARTTLS-protected session. */
  secure: boolean;
  /** MAIL FROM parameters as received (values xtext-decoded), e.g. { BODY: '8BITMIME', SMTPUTF8: true }. */
  mailParams: Record<string, string | true>;
  /** RCPT TO parameters per recipient (NOTIFY, ORCPT). */
  rcptParams: Record<string, Record<string, string | true>>;
};

export type SinkContext = {
  stage: SinkStage;
  /** MAIL FROM address at 'mail', RCPT TO address at 'rcpt'. */
  address?: string;
  session: { remoteAddress: string; clientHostname: string; hostNameAppearsAs: string };
  sink: Sink;
  /** At 'data': what would be stored if the stage is accepted. */
  message?: SinkMessage;
};

export type SinkBehaviour = (
  ctx: SinkContext,
) => undefined | SinkReply | Promise<undefined | SinkReply>;

export type SinkOptions = {
  host: string;
  port?: number;
  behaviour?: SinkBehaviour;
  /** Greeting and EHLO name. */
  name?: string;
  /** Offer STARTTLS with this key and certificate; without it STARTTLS is not offered. */
  tls?: Pick<SecureContextOptions, 'key' | 'cert'>;
  /** EHLO extensions to offer or withhold: 8BITMIME and SMTPUTF8 are offered unless false, DSN only when true. */
  extensions?: { dsn?: boolean; smtputf8?: boolean; eightBitMime?: boolean };
};

export type SinkRejection = SinkReply & { stage: SinkStage; address?: string; connectionId: string };

/** closedAt: when the client ended its stream, or the socket closed if it never did. */
export type SinkConnection = { id: number; remoteAddress: string; openedAt: number; closedAt?: number };

export type Sink = {
  host: string;
  port: number;
  /** Accepted messages only. */
  messages: SinkMessage[];
  /** Every reply the behaviour scripted, in order. */
  rejections: SinkRejection[];
  /** TCP connections accepted so far. */
  connections: number;
  /** TCP connections open right now. */
  open: number;
  /** Every accepted TCP connection, in accept order. */
  connectionLog: SinkConnection[];
  /** Most TCP connections open at once over connectionLog, overall and per client address. */
  peakConcurrency(): { total: number; bySource: Record<string, number> };
  close(): Promise<void>;
  waitForMessages(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  /** Resolves with the accepted messages addressed to any of these once each has arrived. */
  waitForRecipients(addresses: string[], timeoutMs?: number): Promise<SinkMessage[]>;
  waitForConnections(n: number, timeoutMs?: number): Promise<number>;
  /** Resolves once exactly n TCP connections are open, e.g. 0 after the client closed them all. */
  waitForOpen(n: number, timeoutMs?: number): Promise<number>;
  /** Resolves with the first value `check` returns that is not undefined, looked at after every change. */
  waitUntil<T>(check: () => T | undefined, what: string, timeoutMs?: number): Promise<T>;
};

function readAll(stream: SMTPServerDataStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

function listen(server: SMTPServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
}

// Epoch milliseconds like Date.now(), with the monotonic clock's sub-millisecond resolution.
function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

function summary(sink: Sink): string {
  const got = sink.messages.map((m) => `${m.mailFrom || '<>'} -> ${m.rcptTo.join(',')}`);
  return (
    `sink ${sink.host}:${sink.port} had ${sink.connections} connection(s), ` +
    `${sink.messages.length} message(s) [${got.join('; ')}], rejections ${JSON.stringify(sink.rejections)}`
  );
}

export async function startSink(opts: SinkOptions): Promise<Sink> {
  const behaviour = opts.behaviour ?? (() => undefined);
  const changed = new Condition();
  const sockets = new Set<Socket>();
  /** The parameters of each session's transaction in progress. */
  const params = new Map<string, { mail: Record<string, string | true>; rcpt: Record<string, Record<string, string | true>> }>();

  // Runs the scripted behaviour and turns its reply into the error smtp-server sends verbatim.
  const decide = async (
    stage: SinkStage,
    session: SMTPServerSession,
    extra: { address?: string; message?: SinkMessage },
  ): Promise<Error | null> => {
    let reply: SinkReply | undefined;
    try {
      reply = await behaviour({
        stage,
        session: {
          remoteAddress: session.remoteAddress,
          clientHostname: session.clientHostname,
          hostNameAppearsAs: session.hostNameAppearsAs,
        },
        sink,
        ...extra,
      });
    } catch (err) {
      reply = { code: 451, message: `sink behaviour threw: ${String(err)}` };
    }
    if (!reply) return null;
    const rejection: SinkRejection = { ...reply, stage, connectionId: session.id };
    if (extra.address !== undefined) rejection.address = extra.address;
    sink.rejections.push(rejection);
    changed.notify();
    return Object.assign(new Error(reply.message), { responseCode: reply.code });
  };

  const server = new SMTPServer({
    ...(opts.name ? { name: opts.name } : {}),
    logger: false,
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: true,
    hideDSN: opts.extensions?.dsn !== true,
    hideSMTPUTF8: opts.extensions?.smtputf8 === false,
    hide8BITMIME: opts.extensions?.eightBitMime === false,
    authOptional: true,
    ...(opts.tls
      ? { key: opts.tls.key, cert: opts.tls.cert, disabledCommands: ['AUTH'] }
      : { disabledCommands: ['AUTH', 'STARTTLS'], hideSTARTTLS: true }),
    onConnect(session, callback) {
      decide('connect', session, {}).then(callback, callback);
    },
    onMailFrom(address, session, callback) {
      params.set(session.id, { mail: address.args || {}, rcpt: {} });
      decide('mail', session, { address: address.address }).then(callback, callback);
    },
    onRcptTo(address, session, callback) {
      const p = params.get(session.id);
      if (p) p.rcpt[address.address] = address.args || {};
      decide('rcpt', session, { address: address.address }).then(callback, callback);
    },
    onData(stream, session, callback) {
      readAll(stream)
        .then(async (raw) => {
          const envelope = session.envelope;
          const message: SinkMessage = {
            mailFrom: envelope.mailFrom ? envelope.mailFrom.address : '',
            rcptTo: envelope.rcptTo.map((r) => r.address),
            raw,
            remoteAddress: session.remoteAddress,
            helo: session.hostNameAppearsAs,
            connectionId: session.id,
            receivedAt: Date.now(),
            secure: session.secure,
            mailParams: params.get(session.id)?.mail ?? {},
            rcptParams: params.get(session.id)?.rcpt ?? {},
          };
          const err = await decide('data', session, { message });
          if (!err) {
            sink.messages.push(message);
            changed.notify();
          }
          callback(err);
        })
        .catch(callback);
    },
  });
  // Client resets surface as server errors; without a listener they would crash the test process.
  server.on('error', () => undefined);
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    const entry: SinkConnection = {
      id: sink.connections + 1,
      remoteAddress: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      openedAt: preciseNow(),
    };
    sink.connectionLog.push(entry);
    sink.open++;
    // The client's end of the stream is when the session is over for a receiver counting them:
    // 'close' comes a turn of the event loop later, after connections accepted meanwhile.
    socket.once('end', () => {
      entry.closedAt ??= preciseNow();
    });
    socket.once('close', () => {
      sockets.delete(socket);
      entry.closedAt ??= preciseNow();
      sink.open--;
      changed.notify();
    });
    sink.connections++;
    changed.notify();
  });

  const sink: Sink = {
    host: opts.host,
    port: 0,
    messages: [],
    rejections: [],
    connections: 0,
    open: 0,
    connectionLog: [],
    peakConcurrency() {
      // A close and the next open often fall in the same millisecond; sub-millisecond stamps keep
      // them ordered, and on an exact tie the close counts first so reuse is not read as overlap.
      const events = sink.connectionLog.flatMap((c) => [
        { at: c.openedAt, delta: 1, source: c.remoteAddress },
        ...(c.closedAt === undefined ? [] : [{ at: c.closedAt, delta: -1, source: c.remoteAddress }]),
      ]);
      events.sort((a, b) => a.at - b.at || a.delta - b.delta);
      let open = 0;
      let total = 0;
      const openBy: Record<string, number> = {};
      const bySource: Record<string, number> = {};
      for (const e of events) {
        open += e.delta;
        openBy[e.source] = (openBy[e.source] ?? 0) + e.delta;
        total = Math.max(total, open);
        bySource[e.source] = Math.max(bySource[e.source] ?? 0, openBy[e.source]!);
      }
      return { total, bySource };
    },
    close() {
      // smtp-server would wait up to 30 s for clients to QUIT; a sink that is "down" must refuse at once.
      // A socket upgraded by STARTTLS may never report 'close' on its raw socket, so the log is
      // completed here rather than by waiting for those events.
      const now = preciseNow();
      for (const c of sink.connectionLog) c.closedAt ??= now;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
    waitForMessages(n, timeoutMs = 15000) {
      return changed.until(
        () => (sink.messages.length >= n ? sink.messages.slice() : undefined),
        timeoutMs,
        () => `waiting for ${n} message(s); ${summary(sink)}`,
      );
    },
    waitForRecipients(addresses, timeoutMs = 15000) {
      const wanted = addresses.map((a) => a.toLowerCase());
      const addressedTo = () => sink.messages.filter((m) => m.rcptTo.some((r) => wanted.includes(r.toLowerCase())));
      return changed.until(
        () => {
          const seen = new Set(addressedTo().flatMap((m) => m.rcptTo.map((r) => r.toLowerCase())));
          return wanted.every((a) => seen.has(a)) ? addressedTo() : undefined;
        },
        timeoutMs,
        () => `waiting for recipients ${addresses.join(', ')}; ${summary(sink)}`,
      );
    },
    waitForConnections(n, timeoutMs = 15000) {
      return changed.until(
        () => (sink.connections >= n ? sink.connections : undefined),
        timeoutMs,
        () => `waiting for ${n} connection(s); ${summary(sink)}`,
      );
    },
    waitUntil(check, what, timeoutMs = 15000) {
      return changed.until(check, timeoutMs, () => `waiting for ${what}; ${summary(sink)}`);
    },
    waitForOpen(n, timeoutMs = 15000) {
      return changed.until(
        () => (sink.open === n ? n : undefined),
        timeoutMs,
        () => `waiting for ${n} open connection(s), ${sink.open} open; ${summary(sink)}`,
      );
    },
  };

  if (opts.port !== undefined) {
    await listen(server, opts.port, opts.host);
    sink.port = opts.port;
  } else {
    // The probed port may be taken before we bind; only then is another try worthwhile.
    for (let attempt = 0; ; attempt++) {
      const port = await freePort(opts.host);
      try {
        await listen(server, port, opts.host);
        sink.port = port;
        break;
      } catch (err) {
        if (attempt >= 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
  }
  return sink;
}

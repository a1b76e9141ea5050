// Plays the upstream MTA that hands mail to the daemon's intake.
import SMTPConnection from 'nodemailer/lib/smtp-connection';

export { smtpDialogue, type DialogueOptions } from './dialogue.js';
export { makeMessage, type MakeMessageOptions } from './message.js';

export type SendMailOptions = {
  host: string;
  port: number;
  /** '' sends the null sender, MAIL FROM:<>. */
  from: string;
  to: string[];
  raw: string | Buffer;
  localAddress?: string;
  /** EHLO name. */
  name?: string;
  timeoutMs?: number;
};

export type SendMailResult = { response: string; accepted: string[]; rejected: string[] };

/** A plain (no STARTTLS) client session to the intake, every stage bounded by one timeout. */
function clientTo(opts: { host: string; port: number; localAddress?: string; name?: string }, timeout: number): SMTPConnection {
  return new SMTPConnection({
    host: opts.host,
    port: opts.port,
    ignoreTLS: true,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    ...(opts.name ? { name: opts.name } : {}),
  });
}

/** Rejects with nodemailer's error, which carries responseCode, response and code. */
export function sendMail(opts: SendMailOptions): Promise<SendMailResult> {
  const conn = clientTo(opts, opts.timeoutMs ?? 15000);
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      conn.close();
      reject(err);
    };
    conn.on('error', fail);
    conn.connect((err) => {
      if (err) return fail(err);
      conn.send({ from: opts.from, to: opts.to }, opts.raw, (err, info) => {
        if (err) return fail(err);
        settled = true;
        // Resolve only once QUIT has been answered, so the caller's next step sees a closed session.
        conn.once('end', () =>
          resolve({ response: info.response, accepted: info.accepted, rejected: info.rejected }),
        );
        conn.quit();
      });
    });
  });
}

export type SendManyOptions = {
  host: string;
  port: number;
  messages: Array<{ from: string; to: string[]; raw: string | Buffer }>;
  /** Parallel SMTP sessions, each sending its share one message after another; default 4. */
  connections?: number;
  timeoutMs?: number;
};

/**
 * Delivers every message over a few persistent sessions and resolves with the server's reply to
 * each, in input order. Rejects with nodemailer's error on the first failure and drops all sessions.
 */
export function sendMany(opts: SendManyOptions): Promise<string[]> {
  const timeout = opts.timeoutMs ?? 15000;
  const responses: string[] = new Array(opts.messages.length);
  const sessions: SMTPConnection[] = [];
  let next = 0;
  let failed = false;

  // Sessions take the next unsent message from a shared cursor, so a slow session holds up only itself.
  const session = () =>
    new Promise<void>((resolve, reject) => {
      const conn = clientTo(opts, timeout);
      sessions.push(conn);
      let done = false;
      const fail = (err: Error) => {
        if (done) return;
        done = true;
        reject(err);
      };
      conn.on('error', fail);
      const sendNext = () => {
        if (failed) return fail(new Error('another sendMany session failed'));
        const i = next++;
        if (i >= opts.messages.length) {
          done = true;
          conn.once('end', () => resolve());
          conn.quit();
          return;
        }
        const m = opts.messages[i]!;
        conn.send({ from: m.from, to: m.to }, m.raw, (err, info) => {
          if (err) return fail(err);
          responses[i] = info.response;
          sendNext();
        });
      };
      conn.connect((err) => (err ? fail(err) : sendNext()));
    });

  if (opts.messages.length === 0) return Promise.resolve([]);
  const count = Math.max(1, Math.min(opts.connections ?? 4, opts.messages.length));
  return Promise.all(Array.from({ length: count }, session)).then(
    () => responses,
    (err: Error) => {
      failed = true;
      for (const conn of sessions) conn.close();
      throw err;
    },
  );
}

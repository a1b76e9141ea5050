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

/** Rejects with nodemailer's error, which carries responseCode, response and code. */
export function sendMail(opts: SendMailOptions): Promise<SendMailResult> {
  const timeout = opts.timeoutMs ?? 15000;
  const conn = new SMTPConnection({
    host: opts.host,
    port: opts.port,
    ignoreTLS: true,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    ...(opts.name ? { name: opts.name } : {}),
  });
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

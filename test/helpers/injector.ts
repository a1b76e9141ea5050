// A steady upstream MTA for crash tests: a few SMTP sessions send numbered messages, one unique
// recipient each, and record what the intake answered to every one. A session that fails (the
// daemon is down, the reply never came) is recorded and reconnects, as a real MTA would.
import { setTimeout as delay } from 'node:timers/promises';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { makeMessage } from './message.js';
import type { Sink } from './sink.js';
import { Condition } from './wait.js';

export type Injected = {
  n: number;
  recipient: string;
  messageId: string;
  /** Epoch ms when the message was handed to the session, and when its outcome was known. */
  sentAt: number;
  answeredAt: number;
  /** accepted: 250 (the daemon owns it); refused: an SMTP error reply; lost: no reply at all. */
  outcome: 'accepted' | 'refused' | 'lost';
  /** The intake's reply; for a lost message, why there was none. */
  reply?: string;
  qid?: string;
};

export type InjectorOptions = {
  host: string;
  port: number;
  /** Parallel sessions. */
  sessions: number;
  /** Recipient domains, used in turn. */
  domains: string[];
  /** Distinguishes this injector's recipients and Message-IDs from any other's. */
  tag: string;
  /** Pause between two messages of one session: keeps the load steady rather than maximal. */
  gapMs: number;
  /** Pause before a failed session reconnects. */
  retryMs: number;
  /** Bound on every SMTP stage; a reply slower than this is recorded as lost. */
  timeoutMs?: number;
};

export type Injector = {
  readonly sent: readonly Injected[];
  /** Resolves once check(sent) is true. */
  until(check: (sent: readonly Injected[]) => boolean, timeoutMs: number, what: string): Promise<void>;
  /** Stops sending, lets each session finish the message it is on, and returns every record. */
  stop(): Promise<Injected[]>;
};

const SENDER = 'injector@sender.test';

/** True once the greeting is in; false when the daemon is not there (nodemailer then only ends the connection). */
function connect(conn: SMTPConnection): Promise<boolean> {
  return new Promise((resolve) => {
    conn.once('end', () => resolve(false));
    conn.connect((err) => resolve(!err));
  });
}

export function startInjector(opts: InjectorOptions): Injector {
  const sent: Injected[] = [];
  const changed = new Condition();
  const timeout = opts.timeoutMs ?? 15000;
  let next = 0;
  let running = true;

  const record = (r: Injected) => {
    sent.push(r);
    changed.notify();
  };

  // Resolves false when the session is no longer usable.
  const sendOne = (conn: SMTPConnection): Promise<boolean> => {
    const n = next++;
    const recipient = `${opts.tag}${n}@${opts.domains[n % opts.domains.length]}`;
    const messageId = `<${opts.tag}${n}@impulse.test>`;
    const raw = makeMessage({ from: SENDER, to: [recipient], messageId, subject: `${opts.tag} ${n}` });
    const sentAt = Date.now();
    return new Promise((resolve) => {
      conn.send({ from: SENDER, to: [recipient] }, raw, (err, info) => {
        const base = { n, recipient, messageId, sentAt, answeredAt: Date.now() };
        if (!err) {
          const qid = /queued as (\S+)/.exec(info.response)?.[1];
          record({ ...base, outcome: 'accepted', reply: info.response, ...(qid ? { qid } : {}) });
          return resolve(true);
        }
        const e = err as Error & { responseCode?: number; response?: string };
        record(e.responseCode ? { ...base, outcome: 'refused', reply: e.response ?? e.message } : { ...base, outcome: 'lost', reply: e.message });
        resolve(false);
      });
    });
  };

  const session = async () => {
    while (running) {
      const conn = new SMTPConnection({
        host: opts.host, port: opts.port, ignoreTLS: true,
        connectionTimeout: timeout, greetingTimeout: timeout, socketTimeout: timeout,
      });
      const ended = new Promise<void>((resolve) => conn.once('end', () => resolve()));
      conn.on('error', () => undefined);
      let usable = await connect(conn);
      while (running && usable) {
        usable = await sendOne(conn);
        if (usable && running) await delay(opts.gapMs);
      }
      if (usable) conn.quit();
      else conn.close();
      await ended;
      if (running) await delay(opts.retryMs);
    }
  };

  const sessions = Array.from({ length: opts.sessions }, session);
  return {
    sent,
    async until(check, timeoutMs, what) {
      await changed.until(() => (check(sent) ? true : undefined), timeoutMs, () => {
        const count = (o: Injected['outcome']) => sent.filter((s) => s.outcome === o).length;
        return `${what}; so far ${count('accepted')} accepted, ${count('refused')} refused, ${count('lost')} lost`;
      });
    },
    async stop() {
      running = false;
      await Promise.all(sessions);
      return sent.slice();
    },
  };
}

/**
 * Resolves once every one of these recipients has a message at the sink; each arrival is looked
 * at once, so thousands of messages cost no more than their count.
 */
export async function waitForDelivered(sink: Sink, recipients: readonly string[], timeoutMs: number): Promise<void> {
  const missing = new Set(recipients);
  const deadline = Date.now() + timeoutMs;
  let seen = 0;
  for (;;) {
    for (; seen < sink.messages.length; seen++) for (const r of sink.messages[seen]!.rcptTo) missing.delete(r);
    if (missing.size === 0) return;
    try {
      await sink.waitForMessages(seen + 1, Math.max(0, deadline - Date.now()));
    } catch {
      throw new Error(`${missing.size} of ${recipients.length} recipients never reached the sink within ${timeoutMs} ms: ${[...missing].slice(0, 20).join(', ')}`);
    }
  }
}

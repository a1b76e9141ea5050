// Runs swaks, the SMTP test tool, against a server and keeps its exit code and transcript.
import { runToEnd } from '../helpers/run.js';

const SWAKS = '/usr/bin/swaks';

export type SwaksResult = {
  /** 0 success; 23 MAIL, 24 RCPT, 25 DATA refused; 28 AUTH failed; 29 TLS failed (swaks(1)). */
  code: number | null;
  /** What swaks printed: `->`/`<-` plain, `~>`/`<~` inside TLS, `<**`/`<~*` an error reply, `===`/`***` its own notes. */
  transcript: string;
};

/** `swaks --server HOST --port PORT --timeout 10 ARGS...`; resolves when it exits. */
export async function swaks(host: string, port: number, args: string[], timeoutMs = 30000): Promise<SwaksResult> {
  const r = await runToEnd(SWAKS, ['--server', host, '--port', String(port), '--timeout', '10', ...args], { timeoutMs, what: `swaks ${args.join(' ')}` });
  return { code: r.code, transcript: r.output };
}

/** The queue id from Impulse's `250 2.0.0 Ok queued as <id>` in a swaks transcript. */
export function queuedAs(transcript: string): string | undefined {
  return /^<[-~]\s+250 2\.0\.0 Ok queued as (\S+)$/m.exec(transcript)?.[1];
}

// One shape for every outcome, remote or internal: an SMTP reply with its enhanced status code,
// so logs, retries and DSNs never need to know where a failure came from.

export interface Reply {
  readonly code: number;
  readonly enhanced: string;
  readonly text: string;
}

const REPLY_LINE = /^(\d{3})[ -]?(?:(\d\.\d{1,3}\.\d{1,3})\s+)?([\s\S]*)$/;

export function reply(code: number, enhanced: string, text: string): Reply {
  return { code, enhanced, text };
}

export function formatReply(r: Reply): string {
  return `${r.code} ${r.enhanced} ${r.text}`;
}

export function isTemporary(r: Reply): boolean {
  return r.code < 500;
}

export function isSuccess(r: Reply): boolean {
  return r.code >= 200 && r.code < 300;
}

/**
 * Parses a reply line as a remote server wrote it. A server that sends no enhanced code gets
 * the generic one of its class (RFC 3463 §3.1: X.0.0), so DSNs always carry a Status.
 */
export function parseReply(line: string): Reply | undefined {
  const flat = line.replace(/\r?\n\d{3}[ -]/g, ' ').trim();
  const m = REPLY_LINE.exec(flat);
  if (!m) return undefined;
  const code = Number(m[1]);
  if (code < 200 || code > 599) return undefined;
  const enhanced = m[2] ?? `${Math.floor(code / 100)}.0.0`;
  return { code, enhanced, text: (m[3] ?? '').trim() };
}

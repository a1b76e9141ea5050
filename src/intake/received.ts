// Trace information added at intake (RFC 5321 §4.4) and the few header facts the logs need.

export interface ReceivedInfo {
  helo: string;
  clientHostname: string;
  clientAddress: string;
  hostname: string;
  qid: string;
  secure: boolean;
  recipients: string[];
  now: number;
}

export function receivedHeader(i: ReceivedInfo): string {
  const from = `from ${i.helo || 'unknown'} (${i.clientHostname || 'unknown'} [${i.clientAddress}])`;
  const forClause = i.recipients.length === 1 ? `\r\n\tfor <${i.recipients[0]}>` : '';
  const date = new Date(i.now).toUTCString().replace(/GMT$/, '+0000');
  return `Received: ${from}\r\n\tby ${i.hostname} (Impulse) with ${i.secure ? 'ESMTPS' : 'ESMTP'} id ${i.qid}${forClause};\r\n\t${date}\r\n`;
}

/** The Message-ID header of a message, if it has one, for log correlation. */
export function messageIdOf(message: Buffer): string | undefined {
  const head = message.subarray(0, 64 * 1024).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  const headers = end < 0 ? head : head.slice(0, end);
  const m = /^message-id:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)/im.exec(headers);
  return m?.[1]?.replace(/\s+/g, ' ').trim() || undefined;
}

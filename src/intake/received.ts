// Trace information added at intake (RFC 5321 §4.4).

interface ReceivedInfo {
  helo: string;
  clientHostname: string;
  clientAddress: string;
  hostname: string;
  qid: string;
  secure: boolean;
  /** The client logged in with SMTP AUTH (RFC 3848: ESMTPA, ESMTPSA). */
  authenticated: boolean;
  /** The transaction used SMTPUTF8 (RFC 6531 3.7.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA). */
  smtputf8: boolean;
  recipients: string[];
  now: number;
}

export function receivedHeader(i: ReceivedInfo): string {
  const from = `from ${i.helo || 'unknown'} (${i.clientHostname || 'unknown'} [${i.clientAddress}])`;
  const forClause = i.recipients.length === 1 ? `\r\n\tfor <${i.recipients[0]}>` : '';
  const date = new Date(i.now).toUTCString().replace(/GMT$/, '+0000');
  return `Received: ${from}\r\n\tby ${i.hostname} (Impulse) with ${i.smtputf8 ? 'UTF8SMTP' : 'ESMTP'}${i.secure ? 'S' : ''}${i.authenticated ? 'A' : ''} id ${i.qid}${forClause};\r\n\t${date}\r\n`;
}

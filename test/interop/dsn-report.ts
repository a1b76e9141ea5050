// Reads a delivery status notification as smtp-sink stored it (LF line ends): its MIME parts, and the per-message and per-recipient fields of its status part (RFC 3464, RFC 6533).
export type ReportPart = { contentType: string; headers: string; body: string };

export type StatusFields = Record<string, string>;

export type Report = {
  /** The top-level Content-Type value, parameters included, unfolded. */
  contentType: string;
  /** report-type=..., lowercased; '' when absent. */
  reportType: string;
  parts: ReportPart[];
  /** The part whose type is message/delivery-status or message/global-delivery-status. */
  status?: ReportPart;
  /** Fields of the status part's first group (Reporting-MTA, Original-Envelope-Id, ...), keys lowercased. */
  perMessage: StatusFields;
  /** One entry per recipient group, keys lowercased. */
  perRecipient: StatusFields[];
  /** The whole text, for failure messages and searches. */
  text: string;
};

function unfold(headers: string): string {
  return headers.replace(/\n[ \t]+/g, ' ');
}

function headerValue(headers: string, name: string): string | undefined {
  return new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(unfold(headers))?.[1]?.trim();
}

function fields(group: string): StatusFields {
  const out: StatusFields = {};
  for (const line of unfold(group).split('\n')) {
    const m = /^([A-Za-z0-9-]+):[ \t]*(.*)$/.exec(line);
    if (m) out[m[1]!.toLowerCase()] = m[2]!.trim();
  }
  return out;
}

export function parseReport(message: Buffer): Report {
  const text = message.toString('utf8');
  const split = text.indexOf('\n\n');
  const head = split < 0 ? text : text.slice(0, split);
  const contentType = headerValue(head, 'Content-Type') ?? '';
  const reportType = /report-type="?([^";\s]+)"?/i.exec(contentType)?.[1]?.toLowerCase() ?? '';
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  const parts: ReportPart[] = [];
  if (boundary && split >= 0) {
    const body = text.slice(split + 2);
    const pieces = body.split(new RegExp(`^--${boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:--)?[ \\t]*$`, 'm'));
    for (const piece of pieces.slice(1, -1)) {
      const p = piece.replace(/^\n/, '');
      const sep = p.indexOf('\n\n');
      const headers = sep < 0 ? p : p.slice(0, sep);
      parts.push({
        contentType: (headerValue(headers, 'Content-Type') ?? 'text/plain').toLowerCase(),
        headers,
        body: sep < 0 ? '' : p.slice(sep + 2),
      });
    }
  }
  const status = parts.find((p) => /^message\/(global-)?delivery-status\b/.test(p.contentType));
  const groups = (status?.body ?? '').split(/\n[ \t]*\n/).map((g) => g.trim()).filter(Boolean);
  return {
    contentType,
    reportType,
    parts,
    ...(status ? { status } : {}),
    perMessage: groups[0] ? fields(groups[0]) : {},
    perRecipient: groups.slice(1).map(fields),
    text,
  };
}

/** The recipient group whose Final-Recipient is this address (case-insensitive), if any. */
export function recipientFields(report: Report, address: string): StatusFields | undefined {
  const wanted = address.toLowerCase();
  return report.perRecipient.find((f) => (f['final-recipient'] ?? '').replace(/^[^;]*;\s*/, '').toLowerCase() === wanted);
}

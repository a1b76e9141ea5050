// The header section of an RFC 5322 message: read as a map for policy and hooks, and rewritten
// to drop control headers the upstream MTA sets for Impulse alone.

/** Byte offset of the blank line that ends the header section (or the message length). */
function headerEnd(message: Buffer): number {
  const crlf = message.indexOf('\r\n\r\n');
  const lf = message.indexOf('\n\n');
  const ends = [crlf >= 0 ? crlf + 2 : -1, lf >= 0 ? lf + 1 : -1].filter((n) => n >= 0);
  return ends.length > 0 ? Math.min(...ends) : message.length;
}

type HeaderFields = Array<{ name: string; raw: string }>;

/** Header fields with their folded continuation lines, in order. */
export function headerFields(message: Buffer): HeaderFields {
  const text = message.subarray(0, headerEnd(message)).toString('latin1');
  const out: Array<{ name: string; raw: string }> = [];
  for (const line of text.split(/(?<=\n)/)) {
    if (/^[ \t]/.test(line) && out.length > 0) out[out.length - 1]!.raw += line;
    else if (line.trim() !== '') out.push({ name: line.slice(0, Math.max(0, line.indexOf(':'))).trim().toLowerCase(), raw: line });
  }
  return out;
}

/** The header section byte for byte, through its last field's line end (a DSN returns it as is). */
export function headerSection(message: Buffer): Buffer {
  return message.subarray(0, headerEnd(message));
}

/** Lower-cased names to unfolded values; the first occurrence of a name wins. */
export function parseHeaders(message: Buffer, all: HeaderFields = headerFields(message)): Map<string, string> {
  const map = new Map<string, string>();
  for (const f of all) {
    if (!f.name || map.has(f.name)) continue;
    map.set(f.name, f.raw.slice(f.raw.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim());
  }
  return map;
}

/** The message without the named header fields (every occurrence, folded lines included). */
export function removeHeaders(message: Buffer, names: readonly string[], all: HeaderFields = headerFields(message)): Buffer {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  if (!all.some((f) => drop.has(f.name))) return message;
  const kept = all.filter((f) => !drop.has(f.name)).map((f) => f.raw).join('');
  return Buffer.concat([Buffer.from(kept, 'latin1'), message.subarray(headerEnd(message))]);
}

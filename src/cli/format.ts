// Text building blocks of the admin commands' human output. Renderers take `now` and the
// terminal width as arguments so the same input always prints the same text.

/** Whole seconds as 45s, 3m12s, 2h05m or 3d4h: two units at most, an operator reads a glance. */
export function humanAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad2(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad2(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${Math.floor(s / 3600) % 24}h`;
}

/** Short waits such as throttle delays, where sub-second precision matters. */
export function humanMs(ms: number): string {
  if (ms <= 0) return '0';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  return humanAge(ms / 1000);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** ISO time in UTC to the second: unambiguous across hosts and easy to grep in logs. */
export function formatTime(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A time with how far it is from now: "2025-01-01T12:00:00Z (3m12s ago)" or "(in 3m12s)". */
export function when(iso: string, now: number): string {
  const diff = Math.round((Date.parse(iso) - now) / 1000);
  if (Number.isNaN(diff)) return iso;
  const rel = diff > 0 ? `in ${humanAge(diff)}` : diff < 0 ? `${humanAge(-diff)} ago` : 'now';
  return `${formatTime(iso)} (${rel})`;
}

/** One line of at most `max` characters: SMTP replies may span lines. */
export function truncate(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  if (line.length <= max) return line;
  return max <= 3 ? line.slice(0, max) : `${line.slice(0, max - 3)}...`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return plural(bytes, 'byte');
  const [value, unit] = bytes < 1024 ** 2 ? [bytes / 1024, 'KB'] : [bytes / 1024 ** 2, 'MB'];
  return `${value.toFixed(1)}${unit} (${bytes} bytes)`;
}

export function list(items: readonly string[]): string {
  return items.length === 0 ? 'none' : items.join(', ');
}

export interface Column {
  title: string;
  align?: 'left' | 'right';
}

/** Columns two spaces apart, numbers right-aligned; the last column is not padded so lines carry no trailing blanks. */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[], indent = ''): string {
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => indent + columns.map((c, i) => {
    const cell = cells[i] ?? '';
    if (c.align === 'right') return cell.padStart(widths[i]!);
    return i === columns.length - 1 ? cell : cell.padEnd(widths[i]!);
  }).join('  ').trimEnd() + '\n';
  return line(columns.map((c) => c.title)) + rows.map(line).join('');
}

/** "Label:  value" lines with the values aligned. */
export function fields(pairs: ReadonlyArray<readonly [string, string]>, indent = ''): string {
  const width = Math.max(...pairs.map(([label]) => label.length)) + 1;
  return pairs.map(([label, value]) => `${indent}${`${label}:`.padEnd(width)}  ${value}\n`).join('');
}

// Human units in the config file: durations (`30s`, `20m`, `12h`, `7d`; a bare number is
// seconds, as in Momentum) and sizes (`25MB`; a bare number is bytes).

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|k|m|g)?$/i;
const SIZE_UNIT: Record<string, number> = { b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNIT_MS[(m[2] ?? 's').toLowerCase()]!);
}

/** Bytes, or undefined when the text is not a size. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const m = SIZE.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNIT[(m[2] ?? 'b').toLowerCase()]!);
}

/** A throttle: at most `count` events in any window of `perMs`. */
export interface Rate {
  count: number;
  perMs: number;
}

const RATE = /^(\d+)\s*(?:\/\s*(.+))?$/;

/** A shaping rule's trigger: `count` matching replies, within `perMs` when set. */
export interface Trigger {
  count: number;
  perMs: number | undefined;
}

/** "N" is N matching replies (the count starts again once the rule acts), "N/D" is N within any window of D. */
export function parseTrigger(value: string | number): Trigger | undefined {
  const m = RATE.exec(String(value).trim());
  if (!m) return undefined;
  const count = Number(m[1]);
  if (count < 1) return undefined;
  if (m[2] === undefined) return { count, perMs: undefined };
  const perMs = parseDuration(/^\d+(\.\d+)?$/.test(m[2].trim()) ? Number(m[2]) : m[2]);
  return perMs === undefined || perMs <= 0 ? undefined : { count, perMs };
}

/** Momentum's throttle syntax: "N" is N per second, "N/S" is N per S (seconds, or a duration). */
export function parseRate(value: string | number): Rate | undefined {
  const m = RATE.exec(String(value).trim());
  if (!m) return undefined;
  const count = Number(m[1]);
  const perMs = m[2] === undefined ? 1000 : parseDuration(/^\d+(\.\d+)?$/.test(m[2].trim()) ? Number(m[2]) : m[2]);
  if (count < 1 || perMs === undefined || perMs <= 0) return undefined;
  return { count, perMs };
}

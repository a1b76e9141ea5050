// How a message body is cut into hash fields so Redis wastes little memory on it. Redis's
// allocator (jemalloc) rounds every allocation up to a size class, four per doubling above
// 128 bytes: a 5,305-byte body stored whole takes a 6,144-byte block, some 800 bytes of padding
// per queued message. Pieces whose allocations fill their classes exactly, plus a remainder,
// keep the padding to one small allocation's. With another allocator the cut costs a few bytes
// per extra field, nothing more.

/** jemalloc's size classes on 64-bit Linux up to 1 MiB: 8, 16, 32 … 128, then four per doubling. */
const CLASSES: number[] = (() => {
  const out = [8];
  for (let s = 16; s <= 128; s += 16) out.push(s);
  for (let base = 128; base < 1 << 20; base *= 2) for (let i = 1; i <= 4; i++) out.push(base + (base / 4) * i);
  return out;
})();

/** Bytes Redis adds to a string's content: its sds header and the terminating NUL. */
function sdsOverhead(len: number): number {
  return len < 256 ? 4 : len < 65536 ? 6 : 10;
}

function allocated(len: number): number {
  const need = len + sdsOverhead(len);
  for (const c of CLASSES) if (c >= need) return c;
  return need;
}

/** The longest string content that fills a size class no larger than `len` bytes of content, if any. */
function largestFilling(len: number): number | undefined {
  for (let i = CLASSES.length - 1; i >= 0; i--) {
    const content = CLASSES[i]! - sdsOverhead(CLASSES[i]!);
    if (content <= len) return content;
  }
  return undefined;
}

/** What one more hash field costs beyond its value: its entry and its name. */
const FIELD_COST = 40;
const MAX_PIECES = 4;

/**
 * Lengths of the pieces a body of `len` bytes is stored in, in order; they sum to `len`. Every cut
 * considered starts with the same full-class pieces (the largest that fit, greedily), so they are
 * found once and each cut is some of them plus the rest. Called for every message.
 */
export function pieceLengths(len: number): number[] {
  const heads: number[] = [];
  let rest = len;
  while (heads.length < MAX_PIECES - 1 && rest > 0) {
    const head = largestFilling(rest);
    if (head === undefined) break;
    heads.push(head);
    rest -= head;
  }
  let best = 0;
  let bestLeft = len;
  let bestCost = Infinity;
  let headsCost = 0;
  let remainder = len;
  for (let n = 0; n <= heads.length; n++) {
    if (n > 0) {
      headsCost += allocated(heads[n - 1]!) + FIELD_COST;
      remainder -= heads[n - 1]!;
    }
    const cost = headsCost + (remainder > 0 || n === 0 ? allocated(remainder) + FIELD_COST : 0);
    if (cost < bestCost) {
      bestCost = cost;
      best = n;
      bestLeft = remainder;
    }
  }
  const parts = heads.slice(0, best);
  if (bestLeft > 0 || best === 0) parts.push(bestLeft);
  return parts;
}

/** The body cut into pieces, as hash fields `<prefix>0`, `<prefix>1`, …, in order. */
export function cutBody(body: Buffer, prefix = ''): Record<string, Buffer> {
  const fields: Record<string, Buffer> = {};
  let at = 0;
  pieceLengths(body.length).forEach((len, i) => {
    fields[prefix + String(i)] = body.subarray(at, at + len);
    at += len;
  });
  return fields;
}

/** Names of the piece fields a body cut with `prefix` may have, in order. */
export function pieceFields(prefix = ''): string[] {
  return Array.from({ length: MAX_PIECES }, (_, i) => prefix + String(i));
}

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
 * Lengths of the pieces a body of `len` bytes is stored in, in order; they sum to `len`. Called
 * for every message, so it builds no array but the answer.
 */
export function pieceLengths(len: number): number[] {
  let bestCount = 0;
  let bestCost = Infinity;
  for (let k = 1; k <= MAX_PIECES; k++) {
    let count = 0;
    let cost = 0;
    let rest = len;
    for (let i = 0; i < k - 1 && rest > 0; i++) {
      const head = largestFilling(rest);
      if (head === undefined) break;
      count++;
      cost += allocated(head) + FIELD_COST;
      rest -= head;
    }
    if (rest > 0 || count === 0) {
      count++;
      cost += allocated(rest) + FIELD_COST;
    }
    if (cost < bestCost) {
      bestCost = cost;
      bestCount = count;
    }
  }
  // The best cut's pieces again: full classes while more than one piece is left, then the rest.
  const parts: number[] = [];
  let rest = len;
  for (let i = 0; i < bestCount - 1; i++) {
    const head = largestFilling(rest)!;
    parts.push(head);
    rest -= head;
  }
  parts.push(rest);
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

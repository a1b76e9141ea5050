// Whether text ends every line in CRLF: what lets delivery's dot-stuffing and DKIM's relaxed body
// take their fast ways over queued mail, which intake already refused with a bare CR or LF in it.

const CR = 0x0d;
const LF = 0x0a;

/** True when every LF in `text` has a CR before it and every CR an LF after it (a CR last has none). */
export function onlyCrlf(text: Buffer): boolean {
  for (let at = text.indexOf(LF); at >= 0; at = text.indexOf(LF, at + 1)) if (at === 0 || text[at - 1] !== CR) return false;
  for (let at = text.indexOf(CR); at >= 0; at = text.indexOf(CR, at + 1)) if (text[at + 1] !== LF) return false;
  return true;
}

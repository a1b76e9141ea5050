// The encodings of DSN parameters: xtext (RFC 3461 4) for ORCPT and ENVID, and for addresses of
// the utf-8 type utf-8-addr-xtext, written \x{HEX} (RFC 6533 3).

/** xtext: '+', '=' and every byte outside '!'..'~' of the UTF-8 encoding as +HH. */
export function xtext(value: string): string {
  let out = '';
  for (const b of Buffer.from(value, 'utf8')) {
    out += b < 0x21 || b > 0x7e || b === 0x2b || b === 0x3d ? `+${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

/**
 * A parameter value decoded from xtext one byte to a character, as smtp-server decodes it, read
 * back as the UTF-8 it was: `zo+C3+AB` arrives as 'zoÃ«' and becomes 'zoë'. A value that is not
 * such UTF-8 (raw UTF-8 sent with SMTPUTF8 has characters above 255) stays as it is.
 */
export function utf8OfXtextBytes(value: string): string {
  if (!/[\x80-\xff]/.test(value) || /[^\x00-\xff]/.test(value)) return value;
  const text = Buffer.from(value, 'latin1').toString('utf8');
  return text.includes('\uFFFD') ? value : text;
}

/** utf-8-addr-xtext (RFC 6533 3): every character but a QCHAR as \x{HEX}; 7-bit. */
export function utf8AddrXtext(address: string): string {
  let out = '';
  for (const ch of address) {
    const cp = ch.codePointAt(0)!;
    const qchar = cp >= 0x21 && cp <= 0x7e && ch !== '\\' && ch !== '+' && ch !== '=';
    out += qchar ? ch : `\\x{${cp.toString(16).toUpperCase().padStart(2, '0')}}`;
  }
  return out;
}

/** The address a utf-8-addr-xtext or -unitext value stands for; undefined when a backslash starts no valid \x{HEX}. */
export function utf8AddressOf(value: string): string | undefined {
  let valid = true;
  const native = value.replace(/\\(?:x\{([0-9A-Fa-f]{2,6})\})?/g, (_escape, hex: string | undefined) => {
    const cp = hex === undefined ? -1 : parseInt(hex, 16);
    if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) valid = false;
    return valid ? String.fromCodePoint(cp) : '';
  });
  return valid ? native : undefined;
}

// The relaxed header canonicalisation of RFC 6376 §3.4.2, for one field as it stands in the message.

/**
 * One header field in the relaxed canonical form of RFC 6376 §3.4.2, byte for byte: name in
 * lower case (ASCII letters only), unfolded, runs of SP and HTAB as one SP, none around the colon
 * or at the end. mailauth 4.13 (formatRelaxedLine) collapses every JavaScript \s of a Latin-1
 * reading instead, so a VT, an FF or an A0 byte (in UTF-8 the second byte of à, Š or Р, the last
 * of some CJK characters) would become a space in what Impulse signs but not in what a verifier
 * that follows the RFC hashes: such raw UTF-8 fields (RFC 6532) failed at dkimpy.
 */
export function relaxedHeaderField(line: Buffer): Buffer {
  const text = line.toString('latin1');
  const colon = text.indexOf(':');
  const name = text.slice(0, colon).replace(/[ \t]+$/, '').replace(/[A-Z]+/g, (s) => s.toLowerCase());
  const value = text.slice(colon + 1).replace(/\r?\n/g, '').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '');
  return Buffer.from(`${name}:${value}\r\n`, 'latin1');
}

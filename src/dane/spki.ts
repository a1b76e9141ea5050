// The SubjectPublicKeyInfo of a certificate as its DER bytes stand in the certificate, which is
// what TLSA selector 1 matches (RFC 6698 §2.1.2): a re-encoding of the key could differ from them.

interface Element {
  tag: number;
  start: number;
  end: number;
  contentStart: number;
}

function element(der: Buffer, at: number): Element {
  if (at + 2 > der.length) throw new Error('truncated DER');
  const tag = der[at]!;
  let length = der[at + 1]!;
  let contentStart = at + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4) throw new Error('unsupported DER length');
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[contentStart + i]!;
    contentStart += octets;
  }
  const end = contentStart + length;
  if (end > der.length) throw new Error('truncated DER');
  return { tag, start: at, end, contentStart };
}

const SEQUENCE = 0x30;
const EXPLICIT_VERSION = 0xa0;

/** RFC 5280 §4.1: the seventh field of the TBSCertificate, counting the optional version. */
export function subjectPublicKeyInfo(certificate: Buffer): Buffer {
  const tbs = element(certificate, element(certificate, 0).contentStart);
  let at = tbs.contentStart;
  if (element(certificate, at).tag === EXPLICIT_VERSION) at = element(certificate, at).end;
  // serialNumber, signature, issuer, validity, subject
  for (let i = 0; i < 5; i++) at = element(certificate, at).end;
  const spki = element(certificate, at);
  if (spki.tag !== SEQUENCE) throw new Error('no SubjectPublicKeyInfo where RFC 5280 puts it');
  return certificate.subarray(spki.start, spki.end);
}
